import Glibc
import SocketKit
import TCPTrace
import WireFaults

/// An EchoServer on a free loopback port and an EchoClient aimed at it, both in this process
/// and tracing into one sink: the demo, the oracle tests and anything else that wants both
/// sides of one connection in one timeline.
/// Single owner (the thread running the demo or test): not Sendable.
public final class InProcessEcho {
    public let server: EchoServer
    public let client: EchoClient
    public let serverTracer: StateTracer
    public let clientTracer: StateTracer
    private let serverThread: ThreadHandle
    private var stopped = false

    /// - Parameter configure: adjusts the server (one loop, port 0 by default) before it binds.
    /// - Parameter faults: the fault wire: the server binds its end, in its own namespace.
    public init(sink: TraceSink, host: String = "127.0.0.1", kernel: TracepointSource? = nil, timeoutSeconds: Double = 10,
                faults: FaultWire? = nil, configure: (inout EchoServerConfiguration) -> Void = { _ in }) throws {
        var serverConfig = EchoServerConfiguration()
        serverConfig.host = faults.map { _ in FaultWire.serverHost } ?? host
        serverConfig.port = 0
        serverConfig.threads = 1
        configure(&serverConfig)
        serverTracer = StateTracer(sink: sink, side: .server, firstConnectionID: 0, kernel: kernel, ownersMustNotBlock: true)
        let server = EchoServer(configuration: serverConfig, tracer: serverTracer)
        self.server = server
        // On the fault wire the listener (and the loops' sock_diag) live in the server's namespace.
        let (address, thread) = try faults.map { try $0.inServerNamespace { (try server.bind(), try server.start()) } }
            ?? (try server.bind(), try server.start())
        serverThread = thread
        if let diag = faults?.serverDiag { serverTracer.follower.use(diag) }
        var clientConfig = EchoClientConfiguration()
        clientConfig.host = address.host
        clientConfig.port = address.port
        clientConfig.ioTimeoutSeconds = timeoutSeconds
        clientConfig.connectTimeoutSeconds = timeoutSeconds
        clientTracer = StateTracer(sink: sink, side: .client, kernel: kernel)
        client = EchoClient(configuration: clientConfig, tracer: clientTracer)
    }

    /// Waits (bounded) for the server to close its connection and for both followers to reach
    /// a resting state (gone or TIME_WAIT), so the timeline holds LAST_ACK/TIME_WAIT too.
    public func settle(timeoutSeconds: Double = 2) {
        let deadline = MonotonicClock.now() + UInt64(timeoutSeconds * 1e9)
        while server.stats.snapshot.closed < 1 && MonotonicClock.now() < deadline { usleep(500) }
        serverTracer.follower.settle(timeoutSeconds: 1)
        clientTracer.follower.settle(timeoutSeconds: 1)
    }

    /// Stops the server (its listener's close is traced) and joins its thread. Idempotent.
    public func stopServer() {
        guard !stopped else { return }
        stopped = true
        server.stop()
        serverThread.join()
    }

    /// Reports what is still pending (TIME_WAIT's timer) and stops following.
    public func finishFollowing() {
        serverTracer.follower.finish()
        clientTracer.follower.finish()
    }

    deinit { stopServer() }
}
