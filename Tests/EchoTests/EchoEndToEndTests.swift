import Foundation
import Testing
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// The executables as a user runs them: server and client in separate processes, JSON traces.
@Suite(.serialized) struct EchoEndToEndTests {
    /// `off` is what every unprivileged user gets; `auto` uses the kernel tracepoint when root.
    @Test(.needsTimeWaitRoom, arguments: ["off", "auto"])
    func messages_areEchoed_andBothLogsShowClientFirstClose(kernelTrace: String) throws {
        let server = try ServerProcess(["--kernel-trace", kernelTrace])
        let client = try ChildProcess("EchoClient", ["--port", String(server.port), "--trace", "json",
                                                     "--kernel-trace", kernelTrace, "hello", "world"])
        #expect(client.wait() == 0)
        #expect(client.stdoutText == "hello\nworld\n")
        // The server closes its side after the client's FIN; wait for its CLOSED.
        #expect(server.child.waitForStderr { $0.contains("\"to\":\"CLOSED\"") && $0.contains("\"conn\":1,") })
        #expect(server.stop() == 0)

        let clientStates = client.events.states(side: .client)
        #expect(clientStates.starts(with: [.synSent, .established]))
        #expect(clientStates.contains(.finWait1))
        #expect(clientStates.contains(.finWait2))
        #expect(clientStates.contains(.timeWait))
        let timeWait = try #require(client.events.first { $0.to == .timeWait })
        #expect(timeWait.source == .sockDiag)

        let serverStates = server.child.events.states(side: .server, conn: 1)
        #expect(serverStates == [.synReceived, .established, .closeWait, .lastAck, .closed])
        #expect(server.child.events.states(side: .server, conn: 0).first == .listen)
        // Honesty: every inferred state says so; nothing inferred claims an observation source.
        for event in client.events + server.child.events where event.kind == .state {
            #expect(event.source != nil)
            if kernelTrace == "off" { #expect(event.source != .tracepoint) }
            if event.cause.hasPrefix("between ") { #expect(event.source == .inferred) }
        }
    }

    @Test func ipv6Loopback_works() throws {
        let server = try ServerProcess(["--host", "::1"])
        let client = try ChildProcess("EchoClient", ["--host", "::1", "--port", String(server.port), "--trace", "json", "six"])
        #expect(client.wait() == 0)
        #expect(client.stdoutText == "six\n")
        #expect(client.events.first { $0.kind == .state }?.peer == "[::1]:\(server.port)")
        _ = server.stop()
    }

    @Test func binaryData_roundTripsThroughStdinMode() throws {
        let server = try ServerProcess(["--trace", "off"])
        var payload = [UInt8](repeating: 0, count: 3 * 1024 * 1024 + 17)
        var generator = SystemRandomNumberGenerator()
        for i in payload.indices { payload[i] = UInt8.random(in: 0...255, using: &generator) }
        let data = Data(payload)
        let client = try ChildProcess("EchoClient", ["--port", String(server.port), "--trace", "off"], stdin: true)
        let writer = Thread {
            client.stdinHandle.write(data)
            try? client.stdinHandle.close()
        }
        writer.start()
        #expect(client.wait(timeout: 60) == 0)
        #expect(client.stdout == data)
        _ = server.stop()
    }

    @Test func refusedConnection_exitsNonZeroWithOneClearLine() throws {
        // Bind then close a listener to find a port with nothing on it.
        let probe = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        let port = try probe.localAddress().port
        try probe.close()
        let client = try ChildProcess("EchoClient", ["--port", String(port), "--trace", "off", "x"])
        #expect(client.wait() == 69)
        let lines = client.stderrText.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains("connect(127.0.0.1:\(port)): Connection refused (ECONNREFUSED)") == true)
    }

    @Test func refusedConnection_traceShowsSynSentThenClosed() throws {
        let probe = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        let port = try probe.localAddress().port
        try probe.close()
        let client = try ChildProcess("EchoClient", ["--port", String(port), "--trace", "json", "x"])
        #expect(client.wait() == 69)
        #expect(client.events.states(side: .client) == [.synSent, .closed])
        #expect(client.events.contains { $0.kind == .error && $0.errno == ECONNREFUSED })
    }

    @Test(arguments: [
        (["--bogus"], "unknown option"),
        (["--port"], "needs a value"),
        (["--port", "70000"], "not a port number"),
        (["--port", "abc"], "not a port number"),
        (["--trace", "xml"], "not one of text|json|off"),
    ])
    func badArguments_exit64WithOneLine(arguments: [String], message: String) throws {
        for executable in ["EchoServer", "EchoClient"] {
            let child = try ChildProcess(executable, arguments)
            #expect(child.wait() == 64)
            #expect(child.stdoutText.isEmpty)
            let lines = child.stderrText.split(separator: "\n")
            #expect(lines.count == 1, "\(executable) \(arguments): \(child.stderrText)")
            #expect(lines.first?.contains(message) == true)
        }
    }

    @Test func helpAndVersion_exitZero() throws {
        // Written here, not read from SocketKitVersion.current (the constant the programs
        // print): a test taking its expectation from the code under test cannot fail. A
        // release bumps both.
        let expectedVersion = "0.1.0"
        for executable in ["EchoServer", "EchoClient"] {
            let help = try ChildProcess(executable, ["--help"])
            #expect(help.wait() == 0)
            #expect(help.stdoutText.contains("USAGE:"))
            let version = try ChildProcess(executable, ["--version"])
            #expect(version.wait() == 0)
            #expect(version.stdoutText == "\(executable) \(expectedVersion)\n")
        }
    }

    @Test func portInUse_exits69() throws {
        let server = try ServerProcess()
        let second = try ChildProcess("EchoServer", ["--port", String(server.port), "--threads", "1"])
        #expect(second.wait() == 69)
        #expect(second.stderrText.contains("Address already in use (EADDRINUSE)"))
        _ = server.stop()
    }

    /// Issue 14: with the default thread count every loop used to set SO_REUSEPORT, and a
    /// second server of the same user joined the group, started silently and took half the
    /// connections. Default settings (no --threads), IPv4 and IPv6, with both --threads 1 and
    /// --threads 4 as the second: one line, exit 69, and every connection still reaches the first.
    @Test(arguments: ["127.0.0.1", "::1"])
    func secondServerOnPort_defaultSettings_exits69(host: String) throws {
        let first = try ChildProcess("EchoServer", ["--host", host, "--port", "0", "--trace", "off"])
        var port: UInt16?
        _ = first.waitForStderr { text in
            guard let range = text.range(of: "listening on ") else { return false }
            port = SocketAddress(parsing: String(text[range.upperBound...].prefix { $0 != " " }))?.port
            return port != nil
        }
        let busy = try #require(port, "first server's port: \(first.stderrText)")
        let loops = EchoServerConfiguration().threads
        #expect(first.stderrText.contains("(\(loops) loop\(loops == 1 ? "" : "s"):"), "default loop count: \(first.stderrText)")
        let shown = host.contains(":") ? "[\(host)]:\(busy)" : "\(host):\(busy)"
        for extra in [[], ["--threads", "4"], ["--trace", "off"]] {
            let second = try ChildProcess("EchoServer", ["--host", host, "--port", "\(busy)"] + extra)
            #expect(second.wait(timeout: 10) == 69, "second server \(extra)")
            let last = second.stderrText.split(separator: "\n").last.map(String.init) ?? ""
            #expect(last == "EchoServer: bind(\(shown)): Address already in use (EADDRINUSE)", "\(second.stderrText)")
        }
        // Every connection goes to the first server: it alone owns the port.
        for index in 0..<20 {
            let client = try ChildProcess("EchoClient", ["--host", host, "--port", "\(busy)", "--trace", "off", "m\(index)"])
            #expect(client.wait(timeout: 10) == 0)
        }
        first.signal(SIGTERM)
        #expect(first.wait(timeout: 15) == 0)
        #expect(first.stderrText.contains("stopped: 20 connections served"), "\(first.stderrText)")
    }

    @Test func unknownHost_exits68() throws {
        let client = try ChildProcess("EchoClient", ["--host", "no-such-host.invalid", "x"])
        #expect(client.wait() == 68)
        #expect(client.stderrText.hasPrefix("EchoClient: getaddrinfo(no-such-host.invalid)"))
    }

    @Test(.needsTimeWaitRoom) func demo_showsBothSidesFromListenToClose() throws {
        let demo = try ChildProcess("EchoClient", ["--demo", "--trace", "json"])
        #expect(demo.wait() == 0)
        #expect(demo.stdoutText == EchoDemo.messages.map { $0 + "\n" }.joined())
        let events = demo.events
        #expect(events.states(side: .server, conn: 0) == [.listen, .closed])
        #expect(events.states(side: .server, conn: 1) == [.synReceived, .established, .closeWait, .lastAck, .closed])
        let client = events.states(side: .client)
        #expect(client == [.synSent, .established, .finWait1, .finWait2, .timeWait])
        #expect(events.contains { $0.side == .client && $0.kind == .info && $0.cause.contains("TIME_WAIT") })
    }

    @Test(.needsTimeWaitRoom) func merge_ordersBothSidesInTime() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("merge-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let serverLog = dir.appendingPathComponent("server.jsonl").path
        let clientLog = dir.appendingPathComponent("client.jsonl").path
        let server = try ServerProcess(["--trace-file", serverLog])
        let client = try ChildProcess("EchoClient", ["--port", String(server.port), "--trace", "json", "--trace-file", clientLog, "m"])
        #expect(client.wait() == 0)
        // Until the server's file has the connection's final CLOSED (the client's FIN handled,
        // our LAST_ACK acknowledged), not a fixed second.
        #expect(waitFor(timeout: 5) {
            let text = (try? String(contentsOfFile: serverLog, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").contains { line in
                guard let event = TraceEvent(jsonLine: line) else { return false }
                return event.kind == .state && event.to == .closed && event.peer != nil
            }
        }, "the server traced the connection's CLOSED")
        _ = server.stop()
        // --merge-all: the listener too (the default shows only the connection both sides saw).
        let merge = try ChildProcess("EchoClient", ["--merge", "--merge-all", serverLog, clientLog, "--no-color"])
        #expect(merge.wait() == 0)
        let lines = merge.stdoutText.split(separator: "\n").map(String.init)
        let listen = try #require(lines.firstIndex { $0.contains("CLOSED → LISTEN") })
        let synSent = try #require(lines.firstIndex { $0.contains("CLOSED → SYN_SENT") })
        let closeWait = try #require(lines.firstIndex { $0.contains("ESTABLISHED → CLOSE_WAIT") })
        let timeWait = try #require(lines.firstIndex { $0.contains("→ TIME_WAIT") })
        #expect(listen < synSent && synSent < closeWait && closeWait < timeWait)
    }
}
