import SocketKit
import Synchronization

/// Shared tracing configuration for one program: where events go, which side it is, and the
/// follower that watches sockets after close(). Hands out per-socket `SocketTracker`s.
public final class StateTracer: Sendable {
    public let sink: TraceSink
    public let side: TraceSide
    /// Also emit `syscall` and `data` events (`--trace-verbose`).
    public let verbose: Bool
    /// Warn when a connection sits in CLOSE_WAIT longer than this.
    public let closeWaitWarnNs: UInt64
    public let follower: SockDiagFollower
    private let nextConn: Atomic<Int>
    /// The kernel tracepoint source (`--kernel-trace`), nil when off or unavailable.
    public let kernel: TracepointSource?
    /// The sockets' owners are event loops: a tracker never sleeps in a sock_diag retry on its
    /// owner's thread, and leaves an open fd's "CLOSED or TIME_WAIT?" to the follower after close().
    public let ownersMustNotBlock: Bool
    /// Read each socket's cookie when it is attached (the sink shows it), not only where a
    /// sock_diag follow-up needs it (`SocketTracker.keepCookie`): SO_COOKIE is a getsockopt that
    /// also makes the kernel generate the cookie, ~0.3 µs of a traced server's CPU a connection
    /// under connect churn (perf: `__sock_gen_cookie`, the user copies, the syscall).
    let eagerCookies: Bool
    /// The last local address formatted, and its text: a server's connections share their
    /// listener's address, so each needs only its peer's formatted (~500 instructions a
    /// connection saved under connect churn, callgrind).
    private let lastLocalText = Mutex<(address: SocketAddress, text: String)?>(nil)
    /// `ProcessIdentity.pid` and `TraceTime.wallOffsetNs`, copied once: as the event
    /// initializer's defaults each was a global's lazy-initialization check per event (10 a
    /// connection under connect churn, callgrind).
    let pid: Int32
    private let wallOffsetNs: Int64

    public init(sink: TraceSink, side: TraceSide, verbose: Bool = false, closeWaitWarnSeconds: Double = 5,
                firstConnectionID: Int = 1, kernel: TracepointSource? = nil, ownersMustNotBlock: Bool = false) {
        self.kernel = kernel
        self.ownersMustNotBlock = ownersMustNotBlock
        self.sink = sink
        eagerCookies = sink.needsCookies
        pid = ProcessIdentity.pid
        wallOffsetNs = TraceTime.wallOffsetNs
        self.side = side
        self.verbose = verbose
        closeWaitWarnNs = UInt64(max(0, closeWaitWarnSeconds) * 1e9)
        follower = SockDiagFollower()
        nextConn = Atomic(firstConnectionID)
    }

    /// Emits through `sink`, for the trackers: called on the tracer, the sink is a stored `let`
    /// of a guaranteed `self` and is borrowed; read through a tracker (`tracer.sink`) it was
    /// retained and released around every event (two atomic operations each; perf had the
    /// retain among the hottest of a traced server under connect churn).
    func emit(_ event: TraceEvent) { sink.emit(event) }

    /// `TraceTime.wallNs(monotonic:)` with the offset copied at init.
    @inline(__always)
    func wallNs(monotonic ns: UInt64) -> Int64 { Int64(bitPattern: ns) &+ wallOffsetNs }

    /// `address` as text (`SocketAddress.description`), the last one remembered.
    func localText(_ address: SocketAddress) -> String {
        if let known = lastLocalText.locked({ $0 }), known.address == address { return known.text }
        let text = address.description
        lastLocalText.locked { $0 = (address, text) }
        return text
    }

    /// A tracker for a new socket. `initial` is the state known by construction (a fresh
    /// socket is CLOSED), not emitted; nil when even that is unknown.
    /// `mailbox`: where the kernel source posts this tracker when changes wait for it (an
    /// event loop's), so its owner applies them without waiting for the next observation.
    public func track(initial: TCPState?, conn: Int? = nil, diag: SockDiag?, mailbox: KernelMailbox? = nil) -> SocketTracker {
        let id = conn ?? nextConn.wrappingAdd(1, ordering: .relaxed).oldValue
        return SocketTracker(tracer: self, conn: id, initial: initial, diag: diag, mailbox: mailbox)
    }
}
