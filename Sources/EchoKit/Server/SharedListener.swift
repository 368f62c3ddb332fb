import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// The server's one listening socket, watched by every event loop with EPOLLEXCLUSIVE.
///
/// Why one socket and not one SO_REUSEPORT listener per loop: Linux lets any process of the same
/// user join a reuseport group, so a second EchoServer on a busy port started silently and took
/// half the connections (issue 14). A single listener without SO_REUSEPORT makes bind() fail
/// with EADDRINUSE for anyone else. EPOLLEXCLUSIVE wakes one idle loop per connection (not all
/// of them); the loop that accepted may hand the connection over (`ConnectionHandoff`).
///
/// Lifetime: every loop `join`s at set-up and `leave`s when it stops accepting. The first to
/// leave shuts the listener down (new connections are refused at once, for every loop); the last
/// closes the descriptor. Only then can its number be reused, so no loop can accept() on, or
/// epoll_ctl, a descriptor that has become someone else's.
final class SharedListener: Sendable {
    private struct Membership {
        var members = 0
        var shutDown = false
    }

    let socket: Socket
    /// The same socket with its trace (LISTEN, accept errors, the shutdown). Those come from
    /// several loops, so it is only used under this lock, on those rare paths; accept() itself
    /// goes through `socket`, which is Sendable.
    private let traced: Mutex<TracedSocket>
    private let membership = Mutex(Membership())

    /// Traces the listener (LISTEN read now) when `tracer` is given. Any loop may record on it,
    /// so it gets its own sock_diag socket and no kernel mailbox (a mailbox would apply kernel
    /// changes on one loop's thread without this lock); its readings apply them under the lock.
    init(socket: Socket, tracer: StateTracer?, backlog: Int32) {
        self.socket = socket
        traced = Mutex(TracedSocket(listening: socket, tracer: tracer, backlog: backlog,
                                    diag: tracer == nil ? nil : try? SockDiag()))
    }

    /// The loop watches the listener from now on.
    func join() { membership.locked { $0.members += 1 } }

    /// A loop stops watching (its epoll has dropped the descriptor already). The first leaver
    /// shuts the listener down; the last closes it.
    func leave() {
        membership.locked { state in
            if !state.shutDown {
                state.shutDown = true
                traced.locked { try? $0.stopAccepting() }
            }
            state.members -= 1
            if state.members == 0 { try? socket.close() }
        }
    }

    /// Whether accepting has ended (a shut-down listener fails accept() with EINVAL).
    var isShutDown: Bool { membership.locked { $0.shutDown } }

    /// An accept() failure on the listener's trace; `detail` says what the loop does about it.
    func acceptFailed(_ error: SystemCallError, detail: String = "") {
        traced.locked { _ = $0.failed(error, during: "accept4", detail: detail) }
    }

    /// A `warning` line on the listener's trace.
    func warning(_ text: String) { traced.locked { $0.warning(text) } }
}

/// Accepted connections on their way from the loop that accepted them to the loop that will own
/// them. The owner is woken through its eventfd and registers them on its own thread (traces
/// and epoll are per loop). Once the owner has stopped (`close`), hand-overs are refused and the
/// accepting loop keeps the connection itself.
///
/// Why hand over at all: EPOLLEXCLUSIVE wakes the first idle loop, and between two arrivals that
/// is nearly always the same one: four streams all landed on one loop and throughput halved on
/// 2 cores (measured: 77 CPU ticks on one loop, 0 on the other). Why not round-robin every
/// connection: under connect/close churn the cross-thread wake-up per connection cost ~40% of
/// the connection rate. So a connection moves only when another loop owns fewer: churn, where
/// the idle (woken) loop is also the least loaded, rarely moves anything.
final class ConnectionHandoff: Sendable {
    private struct State: ~Copyable {
        var sockets: [Socket] = []
        var closed = false
    }

    private let state = Mutex(State())
    /// Connections assigned to this loop and not yet finished (read by the other loops when
    /// choosing where a new connection goes).
    let assigned = Atomic<Int>(0)

    /// From the accepting loop. False when the owner has stopped.
    func offer(_ socket: Socket) -> Bool {
        state.locked { state in
            if state.closed { return false }
            state.sockets.append(socket)
            return true
        }
    }

    /// On the owner's thread: what arrived since the last call.
    func take() -> [Socket] {
        state.locked { state in
            defer { state.sockets.removeAll(keepingCapacity: true) }
            return state.sockets
        }
    }

    /// The owner stops: refuse further offers, return what is still queued.
    func close() -> [Socket] {
        state.locked { state in
            state.closed = true
            defer { state.sockets.removeAll() }
            return state.sockets
        }
    }
}
