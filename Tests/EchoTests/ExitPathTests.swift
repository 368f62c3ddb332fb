import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// Every way the programs end keeps its trace (issue 16): each test writes the JSON trace to a
/// file, lets the process end the way under test, and reads the file only afterwards.
/// The echo-mismatch path is in ForeignPeerTests (greeting server) and ClientFailureTests.
@Suite("Exit paths keep the trace")
struct ExitPathTests {
    func client(_ arguments: [String], file: String, stdin: Bool = false) throws -> ChildProcess {
        try ChildProcess("EchoClient", ["--trace", "json", "--trace-file", file] + arguments, stdin: stdin)
    }

    @Test("success: states to TIME_WAIT, the follower's report, then the verdict, last")
    func success() throws {
        let server = try ServerProcess()
        let file = try traceDirectory() + "/client.jsonl"
        let child = try client(["--port", "\(server.port)", "hello", "world"], file: file)
        #expect(finished(child, within: 20, "EchoClient against EchoServer") == 0, "\(child.stderrText)")
        #expect(server.stop() == 0)
        #expect(child.stdoutText == "hello\nworld\n")
        #expect(child.stderrText == "", "nothing but data on a success")
        let events = try traceEvents(file)
        expectCompleteTrace(events, side: .client, conn: 1, startsFrom: .closed)
        #expect(events.last?.verdict == ExchangeVerdict(outcome: .echoed, sent: 12, received: 12, firstDifference: nil))
        #expect(events.filter { $0.kind == .verdict }.count == 1)
        if events.stateEvents(side: .client, conn: 1).last?.to == .timeWait {
            // Written by the sock_diag follower during the exit: proof it was flushed.
            #expect(events.contains { $0.kind == .info && $0.cause.hasPrefix("still TIME_WAIT in the kernel") && $0.timerMs != nil })
        }
    }

    @Test("an error (connection refused): exit 69, the error and SYN_SENT → CLOSED in the file, no verdict")
    func refused() throws {
        let port = try TestListener().port   // closed again as the listener goes away
        let file = try traceDirectory() + "/client.jsonl"
        let child = try client(["--port", "\(port)", "hello"], file: file)
        #expect(finished(child, within: 20, "EchoClient against a closed port") == 69)
        let events = try traceEvents(file)
        #expect(events.contains { $0.kind == .error && $0.errno == ECONNREFUSED })
        #expect(events.stateEvents(side: .client, conn: 1).last?.to == .closed)
        #expect(!events.contains { $0.kind == .verdict })
        #expect(child.stderrText.hasSuffix("Connection refused (ECONNREFUSED)\n"))
    }

    @Test("an error mid-exchange (reset): exit 69, ECONNRESET and CLOSED in the file")
    func reset() throws {
        let listener = try TestListener()
        let file = try traceDirectory() + "/client.jsonl"
        let child = try client(["--port", "\(listener.port)", "hello"], file: file)
        try listener.acceptReadOnceAndReset()
        #expect(finished(child, within: 20, "EchoClient against a resetting server") == 69)
        let events = try traceEvents(file)
        #expect(events.contains { $0.kind == .error && $0.errno == ECONNRESET })
        #expect(events.stateEvents(side: .client, conn: 1).contains { $0.to == .established })
        #expect(events.stateEvents(side: .client, conn: 1).last?.to == .closed)
    }

    @Test("SIGINT to a waiting client: exit 130, the interruption and our FIN in the file")
    func clientInterrupted() throws {
        let listener = try TestListener()
        let file = try traceDirectory() + "/client.jsonl"
        let child = try client(["--port", "\(listener.port)", "hello"], file: file)
        let fd = try listener.accept()
        defer { Glibc.close(fd) }
        // The client is waiting for an echo that never comes once its message was sent.
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(recv(fd, &buffer, 64, 0) == 6)
        child.signal(SIGINT)
        #expect(finished(child, within: 20, "EchoClient after SIGINT") == 130)
        let events = try traceEvents(file)
        #expect(events.contains { $0.kind == .info && $0.cause.hasPrefix("interrupted by SIGINT") })
        #expect(events.stateEvents(side: .client, conn: 1).contains { $0.to == .finWait1 })
    }

    @Test("stdin mode, --expect any: stdin out, half-close, the reply to EOF, exit 0, verdict last")
    func streamExpectAny() throws {
        let (server, port) = try ForeignPeer.startGreetingServer()
        let file = try traceDirectory() + "/client.jsonl"
        let child = try client(["--port", "\(port)", "--expect", "any"], file: file, stdin: true)
        child.stdinHandle.write(Data("hello\n".utf8))
        try child.stdinHandle.close()
        #expect(finished(child, within: 20, "EchoClient --expect any reading stdin") == 0, "\(child.stderrText)")
        #expect(finished(server, within: 10, "the Python greeting server") == 0)
        #expect(child.stdoutText == "Hello from server\n")
        let events = try traceEvents(file)
        #expect(events.last?.verdict?.outcome == .received)
        expectCompleteTrace(events, side: .client, conn: 1, startsFrom: .closed)
    }

    @Test("EchoServer stopped by SIGTERM: exit 0, the listener's close in the file")
    func serverStopped() throws {
        let file = try traceDirectory() + "/server.jsonl"
        let server = try ServerProcess(traceFile: file)
        #expect(try TestPeer.echoRoundTrip(port: server.port))
        #expect(server.stop() == 0)
        let events = try traceEvents(file)
        #expect(events.contains { $0.kind == .state && $0.conn == 0 && $0.from == .listen && $0.to == .closed })
        #expect(events.contains { $0.kind == .state && $0.conn != 0 && $0.to == .closeWait })
    }

    @Test("EchoServer's second signal exits at once, and the follower still reports the orphan it watches")
    func serverSecondSignal() throws {
        let file = try traceDirectory() + "/server.jsonl"
        let server = try ServerProcess(["--idle-timeout", "1", "--drain-timeout", "30"], traceFile: file)
        // The server closes this idle peer first; the peer never closes, so the server's orphan
        // sits in FIN_WAIT_2, watched by the sock_diag follower (nothing else would report it).
        let idle = try TestPeer(port: server.port)
        #expect(waitFor(timeout: 10) {
            ((try? traceEvents(file)) ?? []).contains { $0.kind == .state && $0.conn != 0 && $0.to == .finWait2 }
        }, "the idle connection reached FIN_WAIT_2")
        let busy = try TestPeer(port: server.port)   // keeps the drain waiting (about 1 s)
        server.child.signal(SIGTERM)
        #expect(waitFor(timeout: 10) { (try? TestPeer(port: server.port, timeoutSeconds: 1)) == nil }, "the listener closed")
        server.child.signal(SIGTERM)
        #expect(finished(server.child, within: 10, "EchoServer after a second SIGTERM") == 128 + SIGTERM)
        let events = try traceEvents(file)
        // (With the kernel tracepoint the orphan's full socket reads CLOSED once Linux turned it
        // into a FIN_WAIT_2 mini-socket; the follower still watches it either way.)
        #expect(events.contains { $0.kind == .info && $0.conn != 0 && $0.cause.contains("in the kernel when the program exited") },
                "the follower's report, written by the exit handler")
        #expect(events.contains { $0.kind == .state && $0.conn == 0 && $0.to == .closed })
        withExtendedLifetime((idle, busy)) {}
    }

    @Test("a usage error leaves an existing trace file untouched: options are checked before the trace starts",
          arguments: [("EchoClient", ["--expect", "maybe", "hello"]), ("EchoServer", ["--threads", "0"])])
    func usageErrorBeforeTheTrace(program: String, arguments: [String]) throws {
        let file = try traceDirectory() + "/previous.jsonl"
        try "previous run\n".write(toFile: file, atomically: false, encoding: .utf8)
        let child = try ChildProcess(program, ["--trace", "json", "--trace-file", file] + arguments)
        #expect(finished(child, within: 10, "\(program) with a usage error") == 64)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "previous run\n")
        #expect(child.stderrText.split(separator: "\n").count == 1, "\(child.stderrText)")
    }

    @Test("--demo with a trace file: both sides' timeline written, exit 0")
    func demo() throws {
        let file = try traceDirectory() + "/demo.jsonl"
        let child = try client(["--demo"], file: file)
        #expect(finished(child, within: 30, "EchoClient --demo") == 0, "\(child.stderrText)")
        let events = try traceEvents(file)
        #expect(events.contains { $0.side == .server && $0.to == .closeWait })
        #expect(events.contains { $0.side == .client && $0.to == .established })
    }

    @Test("load mode traces no states; its report (stdout, a pipe) is complete when it exits 1")
    func loadReport() throws {
        let port = try TestListener().port
        let child = try ChildProcess("EchoClient", ["--load", "--port", "\(port)", "--duration", "0.3", "--connections", "2",
                                                    "--report", "json"])
        #expect(finished(child, within: 20, "EchoClient --load against a closed port") == 1)
        let report = child.stdoutText
        #expect(report.hasPrefix("{\"type\":\"load\"") && report.hasSuffix("}\n"), "\(report)")
        #expect(report.contains("\"connect_errors\":2"))
    }
}
