import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// The client against a server that dies, resets, or never answers: a clear line, a non-zero
/// exit, and the state trace up to the failure.
@Suite("Client against broken servers")
struct ClientFailureTests {
    @Test("the server killed mid-stream: non-zero exit, one clear line, the server's FIN in the trace")
    func serverKilledMidStream() throws {
        let server = try ServerProcess()
        let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json"], stdin: true)
        client.stdinHandle.write(Data("first\n".utf8))
        #expect(waitFor { client.stdoutText == "first\n" })
        server.child.signal(SIGKILL)
        _ = server.child.wait()
        let status = client.wait(timeout: 10)
        #expect(status == 69)
        let last = client.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("EchoClient: the server closed the connection before the end of the input"), "\(last)")
        #expect(client.events.states(side: .client).contains(.closeWait), "the server's FIN is traced")
        #expect(!hasCrashMarker(client.stderrText))
    }

    @Test("a server that reads and closes without echoing: exit 1, 'echo differs'")
    func serverClosesWithoutEcho() throws {
        let listener = try TestListener()
        let client = try ChildProcess("EchoClient", ["--port", "\(listener.port)", "--trace", "json", "hello"])
        let fd = try listener.accept()
        var buffer = [UInt8](repeating: 0, count: 64)
        _ = recv(fd, &buffer, 64, 0)
        Glibc.close(fd)
        #expect(client.wait(timeout: 10) == 1)
        #expect(client.stderrText.hasSuffix("EchoClient: echo differs: sent 6 bytes, received 0; the peer closed after echoing 0 of 6 bytes\n"),
                "\(client.stderrText.suffix(200))")
        #expect(client.events.last?.verdict == ExchangeVerdict(outcome: .shortEcho, sent: 6, received: 0, firstDifference: 0))
    }

    @Test("a server that resets: ECONNRESET named, exit 69, the trace ends in CLOSED")
    func serverResets() throws {
        let listener = try TestListener()
        let client = try ChildProcess("EchoClient", ["--port", "\(listener.port)", "--trace", "json", "hello"])
        try listener.acceptReadOnceAndReset()
        #expect(client.wait(timeout: 10) == 69)
        let last = client.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.contains("Connection reset by peer (ECONNRESET)"), "\(last)")
        #expect(client.events.contains { $0.kind == .error && $0.errno == ECONNRESET })
        #expect(client.events.states(side: .client).last == .closed)
    }

    @Test("--timeout bounds connect() to a server whose accept queue is full: exit 75, SYN_SENT in the trace")
    func connectTimeout() throws {
        // backlog 0: the accept queue holds one connection; fill it, then SYNs are dropped.
        let listener = try TestListener(backlog: 0)
        var fillers: [TestPeer] = []
        for _ in 0..<3 { if let peer = try? TestPeer(port: listener.port, timeoutSeconds: 0.5) { fillers.append(peer) } }
        let started = Date()
        let client = try ChildProcess("EchoClient", ["--port", "\(listener.port)", "--trace", "json", "--timeout", "1", "hello"])
        #expect(client.wait(timeout: 15) == 75)
        print("connect timeout: client done after \(Date().timeIntervalSince(started)) s")
        #expect(Date().timeIntervalSince(started) < 10)
        let last = client.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == "EchoClient: connect(127.0.0.1:\(listener.port)): timed out after 1.0 s", "\(last)")
        #expect(client.events.contains { $0.kind == .state && $0.to == .synSent && $0.source == .tcpInfo },
                "SYN_SENT observed while the SYN went unanswered")
        withExtendedLifetime(fillers) {}
    }

    @Test("--timeout bounds the wait for an echo from a server that accepts and never reads: exit 75")
    func ioTimeout() throws {
        let listener = try TestListener()
        let client = try ChildProcess("EchoClient", ["--port", "\(listener.port)", "--trace", "json", "--timeout", "1", "hello"])
        let fd = try listener.accept()
        defer { Glibc.close(fd) }
        #expect(client.wait(timeout: 15) == 75)
        let last = client.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == "EchoClient: recv: timed out after 1.0 s", "\(last)")
        #expect(client.events.states(side: .client).contains(.established))
        #expect(client.events.contains { $0.kind == .warning && $0.cause.contains("timed out") })
    }
}
