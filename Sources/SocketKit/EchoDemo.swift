import Glibc

/// `EchoClient --demo`: an in-process server on a free loopback port, a client that sends a few
/// messages, half-closes before the last echo arrives, drains and closes; then both sides'
/// states as one timeline.
public enum EchoDemo {
    public struct Outcome: Sendable {
        public var events: [TraceEvent]
        public var matched: Bool
        public var bytesAfterOurFIN: Int
    }

    public static let messages = ["hello", "world", "this line is echoed after our FIN"]

    /// Runs the exchange and returns every trace event of both sides. Echoes go to `output`.
    /// `kernel`: the tracepoint source (`--kernel-trace`), shared by both sides; nil: unprivileged.
    public static func run(host: String = "127.0.0.1", kernel: TracepointSource? = nil,
                           output: ([UInt8]) -> Void) throws -> Outcome {
        let collector = TraceCollector()
        var serverConfig = EchoServerConfiguration()
        serverConfig.host = host
        serverConfig.port = 0
        serverConfig.threads = 1
        let serverTracer = StateTracer(sink: collector, side: .server, firstConnectionID: 0, kernel: kernel)
        let server = EchoServer(configuration: serverConfig, tracer: serverTracer)
        let address = try server.bind()
        let thread = try server.start()

        var clientConfig = EchoClientConfiguration()
        clientConfig.host = address.host
        clientConfig.port = address.port
        clientConfig.ioTimeoutSeconds = 10
        clientConfig.connectTimeoutSeconds = 10
        let clientTracer = StateTracer(sink: collector, side: .client, kernel: kernel)
        let client = EchoClient(configuration: clientConfig, tracer: clientTracer)
        var result = EchoClient.ExchangeResult()
        defer {
            server.stop()
            thread.join()
        }
        do {
            try client.connect()
            result = try client.exchange(messages: messages, lastAfterHalfClose: true, output: output)
        } catch {
            client.noteFailure(error)
            client.close()
            throw error
        }
        // Let the server finish its close and the followers catch LAST_ACK/TIME_WAIT.
        let deadline = MonotonicClock.now() + 2_000_000_000
        while server.stats.snapshot.closed < 1 && MonotonicClock.now() < deadline { usleep(1000) }
        serverTracer.follower.settle(timeoutSeconds: 1)
        clientTracer.follower.settle(timeoutSeconds: 1)
        server.stop()
        thread.join()
        serverTracer.follower.finish()
        clientTracer.follower.finish()
        return Outcome(events: collector.events, matched: result.matched, bytesAfterOurFIN: result.bytesAfterOurFIN)
    }
}
