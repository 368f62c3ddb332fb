import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// The classic tutorial pair against our programs (issue 16): a one-shot server that answers
/// with its own greeting and closes, and a client that sends once, reads once and closes
/// without shutdown(). Each run as the test's user and, when the tests run as root, as nobody.
@Suite("Foreign peers", .enabled(if: ForeignPeer.python != nil, "needs python3 for the foreign peers"))
struct ForeignPeerTests {
    static let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    static var asNobody: [String] { UnprivilegedTests.setpriv.map { [$0] + nobody } ?? [] }

    /// EchoClient hello against the greeting server, JSON trace to a file; returns the
    /// client, its exit status, the trace, and what the server received.
    func clientAgainstGreetingServer(_ extra: [String], messages: [String] = ["hello"], wrapper: [String] = [],
                                     reply: String = "b'Hello from server'") throws
        -> (client: ChildProcess, status: Int32?, events: [TraceEvent], serverReceived: String) {
        let (server, port) = try ForeignPeer.startGreetingServer(reply: reply)
        let file = try traceDirectory() + "/client.jsonl"
        let client = try ChildProcess("EchoClient", ["--port", "\(port)", "--trace", "json", "--trace-file", file] + extra + messages,
                                      wrapper: wrapper)
        let status = finished(client, within: 20, "EchoClient against the greeting server")
        #expect(finished(server, within: 10, "the Python greeting server") == 0, "\(server.stderrText)")
        let received = server.stdoutText.split(separator: "\n").dropFirst().first.map(String.init) ?? ""
        return (client, status, try traceEvents(file), received)
    }

    func checkNotAnEchoServer(wrapper: [String]) throws {
        let run = try clientAgainstGreetingServer([], wrapper: wrapper)
        #expect(run.status == 1)
        #expect(run.serverReceived == "b'hello\\n'")
        #expect(run.client.stdoutText == "", "no echo came back, so nothing is printed as one")
        let last = run.client.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == "EchoClient: echo differs: sent 6 bytes, received 17 (\"Hello from server\"); first difference at byte 0: "
                + "the peer is not an echo server (it sent something else and closed)", "\(run.client.stderrText)")
        // The trace survived the failed exchange and ends with exactly one verdict.
        let verdicts = run.events.filter { $0.kind == .verdict }
        #expect(verdicts.count == 1)
        #expect(run.events.last?.kind == .verdict)
        let verdict = try #require(run.events.last?.verdict)
        #expect(verdict == ExchangeVerdict(outcome: .notEcho, sent: 6, received: 17, firstDifference: 0))
        #expect(run.events.last?.byteCount == 17)
        expectCompleteTrace(run.events, side: .client, conn: 1, startsFrom: .closed)
        // Usually the server's FIN comes with its reply (client: CLOSE_WAIT, LAST_ACK, CLOSED). The
        // client stops at the first wrong byte, though, and may close in the microseconds between
        // the server's send() and close() (measured 1 run in 10): then it is the active closer
        // (FIN_WAIT_1, or CLOSING when the FINs cross). Either way the path is one RFC 9293 allows.
        let states = run.events.stateEvents(side: .client, conn: 1).compactMap(\.to)
        #expect(states.contains(.closeWait) || states.contains(.finWait1), "client states: \(states)")
        #expect(!run.events.stateEvents(side: .client, conn: 1).contains { $0.unexpected }, "client states: \(states)")
        #expect(!hasCrashMarker(run.client.stderrText))
    }

    @Test("EchoClient hello against a greeting server: full trace, verdict 'not an echo server', exit 1")
    func greetingServer_isNotAnEchoServer() throws {
        try checkNotAnEchoServer(wrapper: [])
    }

    @Test("the same as nobody (sock_diag and tcp_info only)",
          .enabled(if: Capabilities.canRunBuiltExecutablesAsNobody, "needs root to switch to nobody with setpriv, and a build directory nobody can reach"))
    func greetingServer_isNotAnEchoServer_asNobody() throws {
        try checkNotAnEchoServer(wrapper: Self.asNobody)
    }

    func checkExpectAny(wrapper: [String]) throws {
        let run = try clientAgainstGreetingServer(["--expect", "any"], wrapper: wrapper)
        #expect(run.status == 0, "\(run.client.stderrText)")
        #expect(run.serverReceived == "b'hello\\n'")
        #expect(run.client.stdoutText == "Hello from server\n")
        let verdict = try #require(run.events.last?.verdict)
        #expect(verdict.outcome == .received && verdict.sent == 6 && verdict.received == 17)
        #expect(run.events.last?.cause == "sent 6 bytes, received 17 (\"Hello from server\"); the peer closed cleanly")
        expectCompleteTrace(run.events, side: .client, conn: 1, startsFrom: .closed)
    }

    @Test("--expect any against a greeting server: what came back on stdout, exit 0")
    func greetingServer_expectAny() throws {
        try checkExpectAny(wrapper: [])
    }

    @Test("--expect any as nobody",
          .enabled(if: Capabilities.canRunBuiltExecutablesAsNobody, "needs root to switch to nobody with setpriv, and a build directory nobody can reach"))
    func greetingServer_expectAny_asNobody() throws {
        try checkExpectAny(wrapper: Self.asNobody)
    }

    @Test("--expect any sends every message in one write and prints a hostile reply escaped, line breaks kept")
    func expectAny_escapesTheReply() throws {
        let run = try clientAgainstGreetingServer(["--expect", "any"], messages: ["GET /", "Host: x"],
                                                  reply: "b'HTTP/1.0 200 OK\\r\\n\\x1b]0;owned\\x07\\x00\\xff\\n'")
        #expect(run.status == 0, "\(run.client.stderrText)")
        #expect(run.serverReceived == "b'GET /\\nHost: x\\n'", "one recv() got both lines")
        #expect(run.client.stdoutText == "HTTP/1.0 200 OK\\r\n\\x1b]0;owned\\x07\\x00\\xff\n")
        #expect(!run.client.stdout.contains(0x1b) && !run.client.stdout.contains(0))
    }

    @Test("a greeting that starts like the echo: 'the echo was followed by N more bytes', first difference at its end")
    func greetingServer_extraBytes() throws {
        let run = try clientAgainstGreetingServer([], reply: "b'hello\\nand more'")
        #expect(run.status == 1)
        #expect(run.client.stdoutText == "hello\n", "the part that was the echo is printed as one")
        #expect(run.events.last?.verdict == ExchangeVerdict(outcome: .extraBytes, sent: 6, received: 14, firstDifference: 6))
        #expect(run.client.stderrText.hasSuffix("; the echo was followed by 8 more bytes\n"), "\(run.client.stderrText.suffix(300))")
    }

    func checkOneShotClient(wrapper: [String]) throws {
        let file = try traceDirectory() + "/server.jsonl"
        let server = try ServerProcess(traceFile: file, wrapper: wrapper)
        let client = try ChildProcess(try #require(ForeignPeer.python), ["-c", ForeignPeer.oneShotClient(port: server.port)])
        #expect(finished(client, within: 15, "the Python one-shot client") == 0, "\(client.stderrText)")
        #expect(client.stdoutText == "b'Hello from client'\n")
        // The server sees the client's FIN after the echo and closes its side.
        #expect(waitFor(timeout: 10) {
            ((try? traceEvents(file)) ?? []).contains { $0.kind == .state && $0.conn != 0 && $0.to == .closed }
        }, "the server traced the connection to CLOSED")
        #expect(server.stop() == 0)
        let events = try traceEvents(file)
        let conn = try #require(events.first { $0.kind == .state && $0.conn != 0 }?.conn)
        expectCompleteTrace(events, side: .server, conn: conn, startsFrom: .listen)
        #expect(events.stateEvents(side: .server, conn: conn).contains { $0.to == .closeWait })
        #expect(!events.contains { $0.kind == .error }, "an orderly close: no reset")
        #expect(events.contains { $0.kind == .state && $0.conn == 0 && $0.to == .closed }, "the listener's close at the stop")
    }

    @Test("EchoServer against a client that sends once, reads once and closes without shutdown()")
    func oneShotClient_againstEchoServer() throws {
        try checkOneShotClient(wrapper: [])
    }

    @Test("the same with EchoServer as nobody",
          .enabled(if: Capabilities.canRunBuiltExecutablesAsNobody, "needs root to switch to nobody with setpriv, and a build directory nobody can reach"))
    func oneShotClient_againstEchoServer_asNobody() throws {
        try checkOneShotClient(wrapper: Self.asNobody)
    }
}
