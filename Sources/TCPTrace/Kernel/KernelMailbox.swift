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
/// them once per wake-up. `wake` is called when the list turns non-empty.
public final class KernelMailbox: Sendable {
    private let waiting = Mutex<[any KernelChangeReceiver]>([])
    private let wake: @Sendable () -> Void

    public init(wake: @escaping @Sendable () -> Void) { self.wake = wake }

    func post(_ tracker: any KernelChangeReceiver) {
        let first = waiting.locked { list in
            defer { list.append(tracker) }
            return list.isEmpty
        }
        if first { wake() }
    }

    /// Applies waiting changes of every tracker whose fd is still open (the follower applies
    /// those of closed ones). Call on the owner thread. Does not drain the rings: nothing is
    /// observed here, and every observation drains them first.
    public func deliver() {
        let trackers = waiting.locked { list in
            defer { list.removeAll() }
            return list
        }
        for tracker in trackers where !tracker.fdClosed { tracker.applyRoutedKernelEvents() }
    }
}
