import Synchronization
import SocketKit

/// One tracker's connection to the source. The inbox and `linked` are shared with the router; the
/// rest belongs to the tracker's owner thread, and after close() to the sock_diag follower that
/// takes the tracker over, so it is atomic or behind a lock too (uncontended: one user at a time).
final class KernelLink: Sendable, RouterTarget {
    let source: TracepointSource
    let mailbox: KernelMailbox?
    /// The changes routed to this socket and not applied yet, and its receiver (`Inbox`). Only
    /// through the methods below, which keep `hasWaiting` true whenever it holds a change. Room
    /// for a connection's usual handful from the start: grown append by append, an array was
    /// reallocated ~3 times a connection (callgrind).
    private let inbox = Mutex(Inbox(changes: ReusedBuffer(capacity: 4)))
    /// The inbox holds a change: set under its lock by whoever adds one, cleared by the owner
    /// when it takes them. Lets the owner's many observations that find nothing for it skip the
    /// lock and the array swap (~3.7 a connection under connect churn, ~200 instructions each).
    private let hasWaiting = Atomic<Bool>(false)
    /// The router has attributed at least one kernel change to this socket.
    let linked = Atomic<Bool>(false)

    /// The sock_diag handle to use: the event loop's while it owns the fd, the follower's after.
    private let owner: Mutex<SockDiag?>
    /// The last kernel state applied, + 1 (0: none yet). An atomic, not a field behind the
    /// lock: it is read and written for every change (two lock round trips a change were ~500
    /// instructions a connection, callgrind).
    private let lastState = Atomic<UInt16>(0)
    private let isRegistered = Atomic<Bool>(false)

    /// The router's, under the source's routing lock only (see `KernelRouter`).
    nonisolated(unsafe) var routerKeys = RouterKeys()

    init(source: TracepointSource, mailbox: KernelMailbox?, diag: SockDiag?) {
        self.source = source
        self.mailbox = mailbox
        owner = Mutex(diag)
    }

    var kernelState: UInt8? {
        get {
            let stored = lastState.load(ordering: .acquiring)
            return stored == 0 ? nil : UInt8(truncatingIfNeeded: stored - 1)
        }
        set { lastState.store(newValue.map { UInt16($0) + 1 } ?? 0, ordering: .releasing) }
    }

    var diag: SockDiag? {
        get { owner.locked { $0 } }
        set { owner.locked { $0 = newValue } }
    }

    var registered: Bool {
        get { isRegistered.load(ordering: .acquiring) }
        set { isRegistered.store(newValue, ordering: .releasing) }
    }

    /// Whom to post to the mailbox (see `Inbox.receiver`).
    var tracker: (any KernelChangeReceiver)? {
        get { inbox.locked { $0.receiver } }
        set { inbox.locked { $0.receiver = newValue } }
    }

    var isLinked: Bool { linked.load(ordering: .acquiring) }

    /// Adds changes at the end, in order (the router's hand-out), and returns whom to post to
    /// the mailbox, in the same lock round trip; `lifeEnded` (the changes end in CLOSE: nothing
    /// more will come) lets the receiver go.
    func post(_ changes: UnsafeBufferPointer<KernelStateChange>, lifeEnded: Bool) -> (any KernelChangeReceiver)? {
        inbox.locked { inbox in
            inbox.changes.append(contentsOf: changes)
            hasWaiting.store(true, ordering: .releasing)
            let receiver = inbox.receiver
            if lifeEnded { inbox.receiver = nil }
            return receiver
        }
    }

    /// Puts changes taken too early back in front of any that came meanwhile.
    func putBack(_ changes: UnsafeBufferPointer<KernelStateChange>) {
        inbox.locked { inbox in
            inbox.changes.prepend(contentsOf: changes)
            hasWaiting.store(true, ordering: .releasing)
        }
    }

    /// Whether the inbox holds a change, without its lock.
    var hasWaitingChanges: Bool { hasWaiting.load(ordering: .acquiring) }

    /// Takes what the inbox holds and calls `body` with it, outside the lock, in a buffer on the
    /// stack that `body` may reorder. Nothing when the inbox is empty. Changes posted meanwhile
    /// wait for the next call (`hasWaitingChanges` says so).
    ///
    /// Copied out, not swapped with an array of the caller's: the swap gave each tracker a
    /// second array to keep (an allocation a connection), and emptying it went through the
    /// generic `Array.removeAll` (~200 instructions a connection; callgrind).
    func takeChanges(_ body: (UnsafeMutableBufferPointer<KernelStateChange>) -> Void) {
        // The usual handful (a connection's whole life is ~5 changes) in one lock round trip
        // into 8 slots on the stack; more, rare, again into a buffer of the count found.
        var room = 8
        while true {
            let found = withUnsafeTemporaryAllocation(of: KernelStateChange.self, capacity: room) { buffer -> Int in
                let (taken, waiting) = inbox.locked { inbox -> (Int?, Int) in
                    let waiting = inbox.changes.count
                    guard waiting <= buffer.count else { return (nil, waiting) }
                    hasWaiting.store(false, ordering: .releasing)
                    return (inbox.changes.moveFront(into: buffer), waiting)
                }
                guard let taken else { return waiting }
                if taken > 0 { body(UnsafeMutableBufferPointer(rebasing: buffer[0..<taken])) }
                return 0
            }
            guard found > 0 else { return }
            room = found
        }
    }

    /// The changes routed to the socket and not applied yet, in hand-out order, and whom to
    /// post to the mailbox when some arrive: one lock for both, since the hand-out needs both
    /// (two locks a run of changes were ~3 of a connection's ~35 lock round trips).
    private struct Inbox: ~Copyable {
        var changes: ReusedBuffer<KernelStateChange>
        /// Set by `register` under the source's routing lock. Strong, and let go when nothing
        /// more can be posted (the fd is closed, the socket's life ended in CLOSE, or it is
        /// unregistered): a `weak` reference gave every tracker a side table, and then each of
        /// its retains and releases took the runtime's slow path (~7% of a traced server's
        /// instructions under connect churn, callgrind).
        var receiver: (any KernelChangeReceiver)? = nil
    }
}
