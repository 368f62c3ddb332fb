import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// The server's one listening socket, watched by every event loop with EPOLLEXCLUSIVE.
///
/// Why one socket and not one SO_REUSEPORT listener per loop: Linux lets any process of the same
/// user join a reuseport group, so a second EchoServer on a busy port started silently and took
/// half the connections (issue 14). A single listener without SO_REUSEPORT makes bind() fail
/// with EADDRINUSE for anyone else. EPOLLEXCLUSIVE wakes one waiting loop (or a few) per
/// connection instead of all of them, so the loops still share the accepting.
///
/// Lifetime: every loop `join`s at set-up and `leave`s when it stops accepting. The first to
/// leave shuts the listener down (new connections are refused at once, for every loop); the last
/// closes the descriptor. Only then can its number be reused, so no loop can accept() on, or
/// epoll_ctl, a descriptor that has become someone else's.
final class SharedListener: @unchecked Sendable {
    private struct Membership {
        var members = 0
        var shutDown = false
    }

    let socket: Socket
    /// Listener events (LISTEN, accept errors, the shutdown) come from several loops: the
    /// tracker is only touched under this lock, on those rare paths.
    private let tracker: Mutex<SocketTracker?>
    private let membership = Mutex(Membership())

    init(socket: Socket) {
        self.socket = socket
        tracker = Mutex(nil)
    }

    /// Set once, by the first loop (its sock_diag and kernel mailbox serve the listener).
    func setTracker(_ tracker: SocketTracker) { self.tracker.withLock { $0 = tracker } }

    /// The loop watches the listener from now on.
    func join() { membership.withLock { $0.members += 1 } }

    /// A loop stops watching (its epoll has dropped the descriptor already). The first leaver
    /// shuts the listener down; the last closes it.
    func leave() {
        membership.withLock { state in
            if !state.shutDown {
                state.shutDown = true
                // shutdown() moves a listener to CLOSED while the fd is still readable by TCP_INFO.
                try? socket.shutdown(.both)
                withTracker { _ = $0.observe(socket, cause: "shutdown(SHUT_RDWR): stopped accepting") }
            }
            state.members -= 1
            if state.members == 0 { try? socket.close() }
        }
    }

    /// Whether accepting has ended (a shut-down listener fails accept() with EINVAL).
    var isShutDown: Bool { membership.withLock { $0.shutDown } }

    func withTracker(_ body: (SocketTracker) -> Void) {
        tracker.withLock { if let tracker = $0 { body(tracker) } }
    }
}
