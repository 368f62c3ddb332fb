import Dispatch
import Glibc
import SocketKit
import Synchronization

/// Watches sockets after their fd was closed, through inet_diag, until the kernel drops them:
/// LAST_ACK, orphaned FIN_WAIT_1/FIN_WAIT_2, CLOSING and TIME_WAIT with its timer.
///
/// Runs on its own dispatch queue, so it never keeps the process alive: `finish()` reports
/// what each socket was last seen in and stops.
///
/// Follow-ups are batched. Every socket has a due time; one timer (not one per socket) wakes
/// the follower at the earliest, and it then looks at every socket due by then, TIME_WAIT
/// expiries within a coarser window (Linux reaps TIME_WAIT sockets in 2 s wide slots of its
/// timer wheel, so they leave in bursts). Many sockets due at once are read with ONE dump of
/// the kernel's table, keeping only the followed cookies, instead of one query each; which is
/// cheaper is measured as it runs (a dump walks the whole table, a lookup costs ~5 µs).
/// @unchecked: `diag`, `items` and `stopped` are touched on `queue` only (a serial queue);
/// `active` is an atomic.
public final class SockDiagFollower: @unchecked Sendable {
    private struct Item {
        let tracker: SocketTracker
        var delayNs: UInt64
        var dueNs: UInt64
        /// A TIME_WAIT expiry check: may run up to `expiryWindowNs` early or late with others.
        var expiry: Bool
        /// The state sock_diag showed last.
        var seen: TCPState? = nil
    }

    private let queue = DispatchQueue(label: "SocketKit.SockDiagFollower")
    private var diag: SockDiag?
    private var items: [ObjectIdentifier: Item] = [:]   // touched on `queue` only
    private var stopped = false                          // touched on `queue` only
    private var timerDueNs: UInt64?                      // the pending wake-up, `queue` only
    private let active = Atomic<Int>(0)
    /// Measured costs (ns), exponentially averaged: what decides dump or lookups.
    private var lookupCostNs: UInt64 = 5_000
    private var dumpCostNs: UInt64 = 200_000
    /// Follow-up reads so far, by kind, `queue` only (see `reads`).
    private var lookups = 0
    private var dumps = 0
    /// When the lookup or dump whose answer is being recorded began.
    private var readSince: UInt64?

    /// TIME_WAIT expiries due within this window are read together.
    static let expiryWindowNs: UInt64 = 20_000_000

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
            items[key] = Item(tracker: tracker, delayNs: 0, dueNs: 0, expiry: false)
            guard let diag = handle() else { drop(key); return }
            let entry = lookup(key, diag: diag)
            if let entry { observed(key, entry, cause: "after \(cause)", diag: diag) }
            scheduleTimer()
        }
    }

    /// How many sockets are still being followed.
    public var pendingCount: Int { active.load(ordering: .relaxed) }

    private func handle() -> SockDiag? {
        if diag == nil { diag = try? SockDiag() }
        return diag
    }

    /// One exact lookup; `.some(nil)` = gone. On failure the socket is dropped with an error event.
    private func lookup(_ key: ObjectIdentifier, diag: SockDiag) -> SockDiagEntry?? {
        guard let tracker = items[key]?.tracker, let local = tracker.local, let peer = tracker.peer else {
            drop(key)
            return nil
        }
        let start = MonotonicClock.now()
        readSince = start
        defer { lookupCostNs = (lookupCostNs * 7 + (MonotonicClock.now() - start)) / 8; lookups += 1 }
        do {
            return .some(try diag.lookup(local: local, peer: peer, cookie: tracker.cookie, expectingTimeWait: tracker.expectsTimeWait))
        } catch let error as SystemCallError {
            tracker.error(error, cause: "sock_diag lookup failed: \(error); stopped following")
        } catch {}
        drop(key)
        return nil
    }

    /// Records what sock_diag showed and sets the socket's next due time, or drops it when gone.
    private func observed(_ key: ObjectIdentifier, _ entry: SockDiagEntry?, cause: String, diag: SockDiag) {
        guard var item = items[key] else { return }
        let tracker = item.tracker
        tracker.followed(entry, cause: entry == nil ? "gone from the kernel's socket table (\(cause))" : cause, diag: diag,
                         readSince: readSince)
        guard let entry else {
            drop(key)
            return
        }
        // A new state in the kernel's table: sample fast again. Compared with what sock_diag
        // showed before, not with the tracker's state: a kernel-linked tracker keeps the
        // tracepoint's state and does not take sock_diag's, and comparing with it reset the
        // backoff on every poll (a lookup every 50 µs for as long as the two differed,
        // measured under churn, 2026-12-04).
        if entry.state != item.seen { item.delayNs = 0 }
        item.seen = entry.state
        // TIME_WAIT ends when its timer fires: look again just after. Other states change on a
        // segment from the peer: sample fast, backing off to 200 ms.
        item.expiry = entry.state == .timeWait && entry.expiresMs > 0 && item.delayNs == 0
        if item.expiry {
            item.delayNs = UInt64(entry.expiresMs) * 1_000_000 + 5_000_000
        } else {
            item.delayNs = item.delayNs == 0 ? 50_000 : min(item.delayNs * 2, 200_000_000)
        }
        item.dueNs = MonotonicClock.now() + item.delayNs
        items[key] = item
    }

    /// One timer for all: at the earliest due time, unless one is already set at or before it.
    private func scheduleTimer() {
        guard !stopped, let next = items.values.lazy.map(\.dueNs).min() else { return }
        if let pending = timerDueNs, pending <= next { return }
        timerDueNs = next
        let now = MonotonicClock.now()
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(next > now ? next - now : 0))) { [self] in
            guard timerDueNs == next else { return }   // superseded by an earlier one
            timerDueNs = nil
            pollDue()
            scheduleTimer()
        }
    }

    /// Reads every socket that is due: by one dump when that is cheaper than a lookup each.
    private func pollDue() {
        guard !stopped, let diag = handle() else { return }
        let now = MonotonicClock.now()
        let due = items.filter { $0.value.dueNs <= now + ($0.value.expiry ? Self.expiryWindowNs : 0) }
        // A socket on its way to TIME_WAIT needs the exact lookup's confirmation (see
        // SockDiag.lookup(expectingTimeWait:)); so does one without a cookie to match on.
        let batchable = due.filter { !$0.value.tracker.expectsTimeWait && $0.value.tracker.cookie != nil }
        var done: Set<ObjectIdentifier> = []
        if batchable.count >= 2, UInt64(batchable.count) * lookupCostNs > dumpCostNs,
           let found = dumpEntries(batchable.map(\.value.tracker), diag: diag) {
            for (key, item) in batchable {
                observed(key, item.tracker.cookie.flatMap { found[$0] }, cause: "sock_diag poll", diag: diag)
                done.insert(key)
            }
        }
        for key in due.keys where !done.contains(key) {
            guard let result = lookup(key, diag: diag) else { continue }
            observed(key, result, cause: "sock_diag poll", diag: diag)
        }
    }

    /// One dump per address family present, keeping only the followed sockets (by cookie).
    private func dumpEntries(_ trackers: [SocketTracker], diag: SockDiag) -> [UInt64: SockDiagEntry]? {
        let wanted = Set(trackers.compactMap(\.cookie))
        let families = Set(trackers.compactMap { $0.local?.family })
        let start = MonotonicClock.now()
        readSince = start
        var found: [UInt64: SockDiagEntry] = [:]
        do {
            for family in families {
                // Every state a closed socket can be in or reach; not LISTEN, not request sockets.
                let states: Set<UInt8> = Set(1...11).subtracting([10])
                for entry in try diag.dump(family: family, states: states, where: { wanted.contains($0.cookie) }) {
                    found[entry.cookie] = entry
                }
            }
        } catch {
            return nil   // fall back to lookups, which report their own errors
        }
        dumpCostNs = (dumpCostNs * 3 + (MonotonicClock.now() - start)) / 4
        dumps += 1
        return found
    }

    private func drop(_ key: ObjectIdentifier) {
        if items.removeValue(forKey: key) != nil { active.subtract(1, ordering: .relaxed) }
    }

    /// Lookups and dumps made so far.
    package var reads: (lookups: Int, dumps: Int) { queue.sync { (lookups, dumps) } }

    /// Runs a poll of every followed socket now, by dump when `dump` (tests: the batched path
    /// and the lookups must agree). Returns the number of sockets read.
    package func pollAllNow(dump: Bool) -> Int {
        queue.sync {
            let saved = dumpCostNs
            if dump { dumpCostNs = 0 } else { dumpCostNs = .max }
            for key in items.keys { items[key]?.dueNs = 0 }
            let count = items.count
            pollDue()
            dumpCostNs = saved
            scheduleTimer()
            return count
        }
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
