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
    }

    public static let messages = ["hello", "world", "this line is echoed after our FIN"]

    /// Runs the exchange and returns every trace event of both sides. Echoes go to `output`.
    /// `kernel`: the tracepoint source (`--kernel-trace`), shared by both sides; nil: unprivileged.
    /// `collector`: where both sides' events go (the caller's, to show them even on failure).
    /// `port`: the server's port (`--demo --port N`); 0 picks a free one.
    public static func run(host: String = "127.0.0.1", port: UInt16 = 0, kernel: TracepointSource? = nil,
                           collector: TraceCollector = TraceCollector(), output: ([UInt8]) -> Void) throws -> Outcome {
        let pair = try InProcessEcho(sink: collector, host: host, kernel: kernel) { $0.port = port }
        defer { pair.stopServer() }
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
        return Outcome(events: collector.events, matched: result.matched, bytesAfterOurFIN: result.bytesAfterOurFIN)
    }
}
