import Glibc
import Synchronization
import SocketKit

/// What the kernel layer needs of a socket's tracker: the tracking layer implements it, so the
/// kernel code never names `SocketTracker` (the tracker holds its `KernelLink`, not the reverse).
package protocol KernelChangeReceiver: AnyObject, Sendable {
    /// The tracker's fd is closed: its follower, not the mailbox owner, applies its changes.
    var fdClosed: Bool { get }
    /// Applies the changes the router put in the tracker's inbox. Called on the owner thread.
    func applyRoutedKernelEvents()
}

/// Trackers of one owner (an event loop) that have kernel changes waiting; the owner applies
/// them once per wake-up, just before it sleeps. `wake` is called when the list turns non-empty
/// from another thread (the tracepoint's reader, another loop, the follower): a post from the
/// owner's own thread needs no wake-up, since the owner delivers before it sleeps again. Under
/// connect churn almost every post comes from the owner (its own observation drained the rings
/// and found other connections' changes), and each wake-up was an eventfd write, an epoll
/// event and an eventfd read.
/// @unchecked: `spare` belongs to the owner thread (only `deliver()` touches it); the rest is a
/// lock or an atomic.
/// The lists are `ReusedBuffer`s: emptying an Array of existentials went through the generic
/// `swift_arrayDestroy`, ~450 instructions a delivery (callgrind, connect churn).
public final class KernelMailbox: @unchecked Sendable {
    private let waiting = Mutex(ReusedBuffer<any KernelChangeReceiver>())
    /// The list's other half, the owner's between deliveries: swapped, so neither list
    /// allocates again once grown (emptying a list that was copied out allocated per post).
    /// No lock: only the owner's `deliver()` uses it (its lock was two of a connection's ~35
    /// lock round trips under connect churn).
    @exclusivity(unchecked) private var spare = ReusedBuffer<any KernelChangeReceiver>()
    @exclusivity(unchecked) private var delivering = false
    private let wake: @Sendable () -> Void
    /// The owner's thread, learned at its first `deliver()` (0: not yet).
    private let owner = Atomic<UInt>(0)

    public init(wake: @escaping @Sendable () -> Void) { self.wake = wake }

    func post(_ tracker: any KernelChangeReceiver) {
        let first = waiting.locked { list in
            defer { list.append(tracker) }
            return list.isEmpty
        }
        if first && owner.load(ordering: .relaxed) != UInt(pthread_self()) { wake() }
    }

    /// Applies waiting changes of every tracker whose fd is still open (the follower applies
    /// those of closed ones). Call on the owner thread, last thing before it sleeps: what
    /// applying posts is applied too. Does not drain the rings: nothing is observed here, and
    /// every observation drains them first.
    public func deliver() {
        owner.store(UInt(pthread_self()), ordering: .relaxed)
        // Applying can post again (an observation inside drains the rings); bounded, and what
        // is left after the last round wakes the owner like a post from elsewhere.
        // Not re-entered (nothing applying calls `deliver()`), and if it were, the outer call's
        // next round takes what was posted: `spare` is iterated in place below.
        guard !delivering else { return }
        delivering = true
        defer { delivering = false }
        for _ in 0..<8 {
            waiting.locked { swap(&$0, &spare) }
            if spare.isEmpty { return }
            spare.withElements(0..<spare.count) { batch in
                for tracker in batch where !tracker.fdClosed { tracker.applyRoutedKernelEvents() }
            }
            spare.removeAll()
        }
        if !waiting.locked({ $0.isEmpty }) { wake() }
    }
}
