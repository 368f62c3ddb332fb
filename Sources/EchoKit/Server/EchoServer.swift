import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// A multi-threaded echo server: one epoll loop per thread, each with its own SO_REUSEPORT
/// listener, every connection's TCP states traced (unless tracing is off).
public final class EchoServer: @unchecked Sendable {
    /// Flags the loops poll once per wakeup.
    final class Control: Sendable {
        private let stop = Atomic<Bool>(false)
        var stopRequested: Bool { stop.load(ordering: .relaxed) }
        func requestStop() { stop.store(true, ordering: .relaxed) }
    }

    public let configuration: EchoServerConfiguration
    public let tracer: StateTracer?
    public let stats = EchoServerStats()
    /// The address actually bound (with the real port when asked for port 0).
    public private(set) var boundAddress: SocketAddress?
    private var loops: [EchoEventLoop] = []
    private var threads: [ThreadHandle] = []
    private let control = Control()

    /// - Parameter tracer: nil for `--trace off`: no state reads at all on any path.
    public init(configuration: EchoServerConfiguration, tracer: StateTracer?) {
        self.configuration = configuration
        self.tracer = tracer
    }

    /// Resolves the host and binds one listener per thread; throws on a bad host or a busy port.
    @discardableResult
    public func bind() throws -> SocketAddress {
        let addresses = try HostResolver.resolve(configuration.host, port: configuration.port)
        var address = addresses[0]
        let count = max(1, configuration.threads)
        var listeners: [Socket] = []
        do {
            for index in 0..<count {
                let socket = try Socket.listening(on: address, backlog: configuration.backlog, reusePort: count > 1)
                if index == 0 { address = try socket.localAddress() }   // port 0 → the real port
                listeners.append(socket)
            }
            for socket in listeners {
                loops.append(try EchoEventLoop(listener: socket, config: configuration, tracer: tracer,
                                               stats: stats, control: control))
            }
        } catch {
            for socket in listeners { try? socket.close() }
            loops.removeAll()
            throw error
        }
        boundAddress = address
        return address
    }

    /// Runs every loop (the first on the calling thread) until `stop()` and the drain finish.
    public func run() throws {
        if loops.isEmpty { try bind() }
        for loop in loops.dropFirst() {
            threads.append(try ThreadHandle { loop.run() })
        }
        loops[0].run()
        for thread in threads { thread.join() }
        threads.removeAll()
    }

    /// Starts `run()` on background threads; returns once listening.
    public func start() throws -> ThreadHandle {
        if loops.isEmpty { try bind() }
        return try ThreadHandle { [self] in try? run() }
    }

    /// Graceful stop: stop accepting, let connections finish up to the drain timeout.
    /// Safe from any thread (not from a signal handler: use a dispatch signal source).
    public func stop() {
        control.requestStop()
        for loop in loops { loop.wakeup.wake() }
    }
}
