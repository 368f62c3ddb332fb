import Synchronization
import SocketKit

/// One tracker's connection to the source. `inbox` and `linked` are shared with the router;
/// the rest is touched only by the tracker's owner thread.
final class KernelLink: @unchecked Sendable {
    let source: TracepointSource
    let mailbox: KernelMailbox?
    let inbox = Mutex<[KernelStateChange]>([])
    /// The router has attributed at least one kernel change to this socket.
    let linked = Atomic<Bool>(false)
    /// Owner-thread state: the last kernel state applied, and the sock_diag handle to use (the
    /// event loop's while it owns the fd, the follower's after close()).
    var kernelState: UInt8?
    var diag: SockDiag?
    var registered = false
    /// Set by `register` under the source's routing lock: whom to post to the mailbox. Weak:
    /// routing does not keep a tracker alive.
    weak var tracker: (any KernelChangeReceiver)?

    init(source: TracepointSource, mailbox: KernelMailbox?, diag: SockDiag?) {
        self.source = source
        self.mailbox = mailbox
        self.diag = diag
    }

    var isLinked: Bool { linked.load(ordering: .acquiring) }
}
