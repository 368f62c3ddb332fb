import Glibc
import SocketKit
import TCPTrace

/// `EchoClient --demo`: an in-process server on a free loopback port, a client that sends a few
/// messages, half-closes before the last echo arrives, drains and closes; then both sides'
/// states as one timeline.
public enum EchoDemo {
    public struct Outcome: Sendable {
        public var events: [TraceEvent]
        public var matched: Bool
        public var bytesAfterOurFIN: Int
        /// The capture's one-line summary when the wire was on.
        public var wireSummary: String?
    }

    public static let messages = ["hello", "world", "this line is echoed after our FIN"]

    /// Runs the exchange and returns every trace event of both sides. Echoes go to `output`.
    /// `kernel`: the tracepoint source (`--kernel-trace`), shared by both sides; nil: unprivileged.
    /// `collector`: where both sides' events go (the caller's, to show them even on failure).
    /// `port`: the server's port (`--demo --port N`); 0 picks a free one.
    /// `wire`: capture the connection's segments (the caller checked it may); `pcapPath`: write them.
    public static func run(host: String = "127.0.0.1", port: UInt16 = 0, kernel: TracepointSource? = nil,
                           collector: TraceCollector = TraceCollector(), wire: Bool = false, pcapPath: String? = nil,
                           output: ([UInt8]) -> Void) throws -> Outcome {
        let pair = try InProcessEcho(sink: collector, host: host, kernel: kernel) { $0.port = port }
        defer { pair.stopServer() }
        // Opened before connect(): the SYN must not pass before the filter names the port.
        let capture = wire ? try WireTracer(ports: [pair.client.configuration.port]) : nil
        var result = EchoClient.ExchangeResult()
        do {
            try pair.client.connect()
            result = try pair.client.exchange(messages: messages, lastAfterHalfClose: true, output: output)
        } catch {
            pair.client.noteFailure(error)
            pair.client.close()
            throw error
        }
        // Let the server finish its close and the followers catch LAST_ACK/TIME_WAIT.
        pair.settle()
        pair.stopServer()
        pair.finishFollowing()
        var events = collector.events
        var summary: String?
        if let capture {
            let run = try capture.finish(events: events, pcapPath: pcapPath)
            events = run.events
            summary = run.summary
        }
        return Outcome(events: events, matched: result.matched, bytesAfterOurFIN: result.bytesAfterOurFIN, wireSummary: summary)
    }
}
