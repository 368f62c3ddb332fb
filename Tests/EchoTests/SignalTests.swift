import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// SIGPIPE, graceful SIGINT/SIGTERM with a drain deadline, a second signal, the client's SIGINT.
@Suite("Signals")
struct SignalTests {
    @Test("SIGPIPE kills neither program")
    func sigpipeIgnored() throws {
        let server = try ServerProcess()
        server.child.signal(SIGPIPE)
        let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json"], stdin: true)
        client.stdinHandle.write(Data("before\n".utf8))
        #expect(waitFor { client.stdoutText == "before\n" })
        client.signal(SIGPIPE)
        // An ignored signal is discarded when sent (nothing to wait for); a default one would
        // kill the client, which `wait` below then sees.
        #expect(ProcStats.ignores(client.pid, signal: SIGPIPE))
        #expect(ProcStats.ignores(server.pid, signal: SIGPIPE))
        client.stdinHandle.write(Data("after\n".utf8))
        try client.stdinHandle.close()
        #expect(client.wait(timeout: 10) == 0)
        #expect(client.stdoutText == "before\nafter\n")
        #expect(try TestPeer.echoRoundTrip(port: server.port))
        #expect(server.stop() == 0)
    }

    @Test("SIGINT/SIGTERM: stop accepting, finish the open connection's echo, one-line summary, exit 0",
          arguments: [SIGINT, SIGTERM])
    func gracefulStop(signo: Int32) throws {
        let server = try ServerProcess(["--drain-timeout", "10"])
        let peer = try TestPeer(port: server.port, receiveBuffer: 4096)
        let first = Bytes.pattern(count: 300_000, seed: 1)
        try peer.send(first)           // the echo backs up: we are not reading yet
        server.child.signal(signo)
        #expect(server.child.waitForStderr { $0.contains("stopped accepting") })
        #expect(throws: SystemCallError.self, "new connections are refused while draining") {
            _ = try TestPeer(port: server.port, timeoutSeconds: 2)
        }
        #expect(server.child.process.isRunning, "still draining the open connection")
        // The open connection keeps working: read the backlog, send more, half-close, all back.
        let second = Bytes.pattern(count: 50_000, seed: 2)
        #expect(try peer.receive(exactly: first.count) == first)
        try peer.send(second)
        peer.shutdownWrite()
        let rest = peer.receiveToEnd()
        #expect(rest.errno == nil)
        #expect(rest.bytes == second)
        #expect(server.child.wait(timeout: 10) == 0)
        // ServerProcess traces JSON: the summary is an event, and every line stays JSON.
        #expect(server.child.events.contains { $0.kind == .info && $0.cause == "stopped: 1 connection served, 350000 bytes echoed, 0 errors" },
                "\(server.child.stderrText)")
        #expect(!server.child.stderrText.contains("EchoServer: stopped:"))
        #expect(server.child.events.contains { $0.kind == .info && $0.cause.hasPrefix("draining 1 connection, up to 10 s") })
        #expect(!hasCrashMarker(server.child.stderrText))
    }

    @Test("the drain deadline closes connections that do not finish, and the server still exits 0")
    func drainTimeout() throws {
        let server = try ServerProcess(["--drain-timeout", "1"])
        let idle = try TestPeer(port: server.port)
        try idle.send(Array("hi\n".utf8))
        #expect(try idle.receive(exactly: 3) == Array("hi\n".utf8))
        let started = Date()
        server.child.signal(SIGTERM)
        let end = idle.receiveToEnd()
        #expect(end.bytes.isEmpty && end.errno == nil, "the server closed with a FIN at the deadline")
        #expect(server.child.wait(timeout: 10) == 0)
        #expect(Date().timeIntervalSince(started) < 8)
        #expect(server.child.events.contains { $0.kind == .warning && $0.cause.contains("drain timeout") })
        #expect(server.child.events.contains { $0.kind == .info && $0.cause == "stopped: 1 connection served, 3 bytes echoed, 0 errors" })
    }

    @Test("a second signal exits at once")
    func secondSignal() throws {
        let server = try ServerProcess(["--drain-timeout", "60"])
        let idle = try TestPeer(port: server.port)
        #expect(try TestPeer.echoRoundTrip(port: server.port))
        server.child.signal(SIGTERM)
        #expect(server.child.waitForStderr { $0.contains("stopped accepting") })
        let started = Date()
        server.child.signal(SIGINT)
        let status = server.child.wait(timeout: 10)
        #expect(status == 128 + SIGINT)
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(server.child.stderrText.contains("EchoServer: second signal, exiting now"))
        idle.close()
    }

    @Test("the client on SIGINT closes cleanly (FIN, traced) and exits 130")
    func clientInterrupt() throws {
        let server = try ServerProcess()
        let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json"], stdin: true)
        client.stdinHandle.write(Data("hello\n".utf8))
        #expect(waitFor { client.stdoutText == "hello\n" })
        client.signal(SIGINT)
        #expect(client.wait(timeout: 10) == 130)
        let events = client.events
        #expect(events.contains { $0.kind == .info && $0.cause.contains("interrupted by SIGINT") })
        let states = events.states(side: .client)
        #expect(states.contains(.finWait1), "our FIN is in the trace: \(states)")
        #expect(client.stderrText.hasSuffix("EchoClient: interrupted by SIGINT\n"), "\(client.stderrText.suffix(200))")
        #expect(!hasCrashMarker(client.stderrText))
        // The server saw an orderly close, not a reset (and has closed its side: listener only).
        #expect(waitForSockets(server.pid, atMost: 1, timeout: 10) <= 1, "\(socketsOn(port: server.port))")
        #expect(server.stop() == 0)
        #expect(!server.child.events.contains { $0.kind == .error })
    }

    @Test("the client waiting on a silent server (no --timeout) is interrupted by SIGINT")
    func clientInterruptWhileWaiting() throws {
        let listener = try TestListener()
        let client = try ChildProcess("EchoClient", ["--port", "\(listener.port)", "--trace", "json", "hello"])
        let fd = try listener.accept()
        defer { Glibc.close(fd) }
        // The client has sent its message and now waits for an answer that never comes.
        var hello = [UInt8](repeating: 0, count: 5)
        var got = 0
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while got < 5 && poll(&ready, 1, 10_000) == 1 {
            let n = hello.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 5 - got, 0) }
            if n <= 0 { break }
            got += n
        }
        #expect(hello == Array("hello".utf8), "the client sent its message before waiting")
        client.signal(SIGINT)
        #expect(client.wait(timeout: 10) == 130)
        #expect(client.events.states(side: .client).contains(.finWait1))
    }
}
