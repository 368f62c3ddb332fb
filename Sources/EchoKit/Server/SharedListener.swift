import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// The server's one listening socket. The first loop accepts on it and hands connections to
/// the loops round-robin (`ConnectionHandoff`).
///
/// Why one socket and not one SO_REUSEPORT listener per loop: Linux lets any process of the same
/// user join a reuseport group, so a second EchoServer on a busy port started silently and took
/// half the connections (issue 14). A single listener without SO_REUSEPORT makes bind() fail
/// with EADDRINUSE for anyone else.
///
/// Why one acceptor and not every loop watching the socket with EPOLLEXCLUSIVE (tried first):
/// the kernel wakes the first idle waiter, which is nearly always the same loop, so four
/// streams all landed on one loop and throughput halved on 2 cores (measured: 77 CPU ticks on
/// one loop, 0 on the other). Round-robin hand-over spreads connections by count, as the
/// reuseport hash did.
final class SharedListener: @unchecked Sendable {
    let socket: Socket
    /// The listener's tracker: created and used by the accepting loop's thread only.
    var tracker: SocketTracker?
    private var accepting = true

    init(socket: Socket) {
        self.socket = socket
    }

    /// The accepting loop stops: shut down (new connections are refused at once), traced,
    /// closed. Idempotent. Called on the accepting loop's thread, after its epoll dropped the fd.
    func stopAccepting() {
        guard accepting else { return }
        accepting = false
        // shutdown() moves a listener to CLOSED while the fd is still readable by TCP_INFO.
        try? socket.shutdown(.both)
        tracker?.observe(socket, cause: "shutdown(SHUT_RDWR): stopped accepting")
        try? socket.close()
    }
}

/// Accepted connections on their way from the accepting loop to the loop that will own them.
/// The owner is woken through its eventfd and registers them on its own thread (trackers and
/// epoll are per loop). Once the owner has stopped (`close`), hand-overs are refused and the
/// acceptor keeps the connection itself.
final class ConnectionHandoff: Sendable {
    private struct State: ~Copyable {
        var sockets: [Socket] = []
        var closed = false
    }

    private let state = Mutex(State())

    /// From the accepting loop. False when the owner has stopped.
    func offer(_ socket: Socket) -> Bool {
        state.withLock { state in
            if state.closed { return false }
            state.sockets.append(socket)
            return true
        }
    }

    /// On the owner's thread: what arrived since the last call.
    func take() -> [Socket] {
        state.withLock { state in
            defer { state.sockets.removeAll(keepingCapacity: true) }
            return state.sockets
        }
    }

    /// The owner stops: refuse further offers, return what is still queued.
    func close() -> [Socket] {
        state.withLock { state in
            state.closed = true
            defer { state.sockets.removeAll() }
            return state.sockets
        }
    }
}
