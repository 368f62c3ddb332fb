import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// A multi-threaded echo server: one epoll loop per thread, all accepting on the one listener
/// (no SO_REUSEPORT: the port has one owner, see `SharedListener`), each connection owned by the
/// least loaded loop; every connection's TCP states traced (unless tracing is off).
public final class EchoServer: Sendable {
    /// Flags the loops poll once per wakeup.
    final class Control: Sendable {
        private let stop = Atomic<Bool>(false)
        /// The signal that asked to stop now (0: none).
        private let abortSignal = Atomic<Int32>(0)
        var stopRequested: Bool { stop.load(ordering: .relaxed) }
        func requestStop() { stop.store(true, ordering: .relaxed) }
        var abortRequested: Bool { abortSignal.load(ordering: .relaxed) != 0 }
        var abortedBy: Int32? { let signo = abortSignal.load(ordering: .relaxed); return signo == 0 ? nil : signo }
        func requestAbort(signal: Int32) {
            abortSignal.store(signal, ordering: .relaxed)
            stop.store(true, ordering: .relaxed)
        }
    }

    public let configuration: EchoServerConfiguration
    public let tracer: StateTracer?
    public let stats = EchoServerStats()
    /// The address actually bound (with the real port when asked for port 0).
    public var boundAddress: SocketAddress? { bound.locked { $0.address } }
    /// Set by `bind`, read by `run` and by `stop` from any thread (a signal's).
    private struct Bound {
        var address: SocketAddress?
        var loops: [EchoEventLoop] = []
    }
    private let bound = Mutex(Bound())
    private var loops: [EchoEventLoop] { bound.locked { $0.loops } }
    private let control = Control()

    /// - Parameter tracer: nil for `--trace off`: no state reads at all on any path.
    public init(configuration: EchoServerConfiguration, tracer: StateTracer?) {
        self.configuration = configuration
        self.tracer = tracer
    }

    /// Resolves the host and binds the one listener; throws on a bad host or a busy port
    /// (EADDRINUSE from bind(), whatever the thread count: nobody else can share the port).
    @discardableResult
    public func bind() throws -> SocketAddress {
        let addresses = try HostResolver.resolve(configuration.host, port: configuration.port)
        if let address = boundAddress { return address }
        let count = max(1, configuration.threads)
        let socket = try Socket.listening(on: addresses[0], backlog: configuration.backlog)
        // Echoes go out at once (no Nagle wait behind an unacknowledged segment). Set on the
        // listener: Linux clones each accepted socket from it, TCP_NODELAY included (measured:
        // the child reads 1 with it set on the listener, 0 without), so no setsockopt per
        // connection.
        try? socket.setOption(.noDelay, true)
        let address: SocketAddress
        var loops: [EchoEventLoop] = []
        do {
            address = try socket.localAddress()   // port 0 → the real port
            let listener = SharedListener(socket: socket, tracer: tracer, backlog: configuration.backlog)
            for _ in 0..<count {
                loops.append(try EchoEventLoop(listener: listener, config: configuration, tracer: tracer,
                                               stats: stats, control: control))
            }
            for loop in loops { loop.peers = loops.map { EchoEventLoop.Peer(loop: $0) } }
        } catch {
            try? socket.close()
            throw error
        }
        bound.locked { [loops] in
            $0.address = address
            $0.loops = loops
        }
        return address
    }

    /// Runs every loop (the first on the calling thread) until `stop()` and the drain finish.
    public func run() throws {
        try bind()
        let loops = self.loops
        var threads: [ThreadHandle] = []
        for loop in loops.dropFirst() {
            threads.append(try ThreadHandle { loop.run() })
        }
        loops[0].run()
        for thread in threads { thread.join() }
    }

    /// Starts `run()` on background threads; returns once listening.
    public func start() throws -> ThreadHandle {
        try bind()
        return try ThreadHandle { [self] in try? run() }
    }

    /// Stop now (a second signal): every loop closes its connections at once and returns, so
    /// `run()` returns and the program exits through its one exit path. Safe from any thread.
    public func abort(signal: Int32) {
        control.requestAbort(signal: signal)
        for loop in loops { loop.wakeup.wake() }
    }

    /// The signal passed to `abort`, once the run was cut short by it.
    public var abortedBy: Int32? { control.abortedBy }

    /// Graceful stop: stop accepting, let connections finish up to the drain timeout.
    /// Safe from any thread (not from a signal handler: use a dispatch signal source).
    public func stop() {
        control.requestStop()
        for loop in loops { loop.wakeup.wake() }
    }
}
