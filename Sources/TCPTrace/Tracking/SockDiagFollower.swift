import Dispatch
import Glibc
import SocketKit
import Synchronization

/// Watches sockets after their fd was closed, through inet_diag, until the kernel drops them:
/// LAST_ACK, orphaned FIN_WAIT_1/FIN_WAIT_2, CLOSING and TIME_WAIT with its timer.
///
/// Runs on its own dispatch queue, so it never keeps the process alive: `finish()` reports
/// what each socket was last seen in and stops.
public final class SockDiagFollower: @unchecked Sendable {
    private struct Item {
        let tracker: SocketTracker
        var delayNs: UInt64
        var generation: Int
    }

    private let queue = DispatchQueue(label: "SocketKit.SockDiagFollower")
    private var diag: SockDiag?
    private var items: [ObjectIdentifier: Item] = [:]   // touched on `queue` only
    private var stopped = false                          // touched on `queue` only
    private let active = Atomic<Int>(0)

    public init() {}

    /// Looks sockets up through `diag` from now on: a sock_diag socket sees only its own network
    /// namespace, so a side whose sockets live in another one (the fault relay's) brings its own.
    public func use(_ diag: SockDiag) {
        queue.async { [self] in self.diag = diag }
    }

    /// Starts following `tracker`'s socket. The first lookup runs at once.
    func follow(_ tracker: SocketTracker, cause: String) {
        active.add(1, ordering: .relaxed)
        queue.async { [self] in
            guard !stopped else { return }
            let key = ObjectIdentifier(tracker)
            items[key] = Item(tracker: tracker, delayNs: 0, generation: 0)
            poll(key, cause: "after \(cause)")
        }
    }

    /// How many sockets are still being followed.
    public var pendingCount: Int { active.load(ordering: .relaxed) }

    private func poll(_ key: ObjectIdentifier, cause: String) {
        guard !stopped, var item = items[key] else { return }
        let tracker = item.tracker
        if diag == nil { diag = try? SockDiag() }
        guard let diag, let local = tracker.local, let peer = tracker.peer else {
            drop(key)
            return
        }
        let entry: SockDiagEntry?
        do {
            entry = try diag.lookup(local: local, peer: peer, cookie: tracker.cookie,
                                    expectingTimeWait: tracker.expectsTimeWait)
        } catch let error as SystemCallError {
            tracker.error(error, cause: "sock_diag lookup failed: \(error); stopped following")
            drop(key)
            return
        } catch {
            drop(key)
            return
        }
        let before = tracker.state
        tracker.followed(entry, cause: entry == nil ? "gone from the kernel's socket table (\(cause))" : cause, diag: diag)
        guard let entry else {
            drop(key)
            return
        }
        if entry.state != before { item.delayNs = 0 }
        // TIME_WAIT ends when its timer fires: look again just after. Other states change on a
        // segment from the peer: sample fast, backing off to 200 ms.
        if entry.state == .timeWait, entry.expiresMs > 0, item.delayNs == 0 {
            item.delayNs = UInt64(entry.expiresMs) * 1_000_000 + 5_000_000
        } else {
            item.delayNs = item.delayNs == 0 ? 50_000 : min(item.delayNs * 2, 200_000_000)
        }
        item.generation += 1
        items[key] = item
        let generation = item.generation
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(item.delayNs))) { [self] in
            guard items[key]?.generation == generation else { return }
            poll(key, cause: "sock_diag poll")
        }
    }

    private func drop(_ key: ObjectIdentifier) {
        if items.removeValue(forKey: key) != nil { active.subtract(1, ordering: .relaxed) }
    }

    /// Waits (up to `timeoutSeconds`) until every followed socket is gone or in TIME_WAIT:
    /// the point where nothing more happens for a minute.
    public func settle(timeoutSeconds: Double) {
        let deadline = MonotonicClock.now() + UInt64(timeoutSeconds * 1e9)
        while MonotonicClock.now() < deadline {
            let busy = queue.sync { items.values.contains { $0.tracker.state != .timeWait } }
            if !busy { return }
            usleep(2_000)
        }
    }

    /// Stops following. Each socket still in the kernel's table gets an `info` event saying
    /// what it was last seen in and what is still pending (e.g. TIME_WAIT's remaining timer).
    public func finish() {
        queue.sync {
            stopped = true
            for item in items.values {
                item.tracker.reportStillInKernel("when the program exited; not waiting for it", diag: diag)
            }
            items.removeAll()
            active.store(0, ordering: .relaxed)
        }
    }
}
