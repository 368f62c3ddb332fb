import Foundation
import Testing
import TestSupport
import SocketKit
import TCPTrace

/// Issue 13, the rest of what a newcomer tripped over: `--merge` shows the client's
/// connection (not every connection the server handled), `--trace-verbose` keeps its promise
/// of syscall events, and an error names its call once.
@Suite(.serialized) struct MergeAndSyscallTests {
    static func scratch(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Three clients, one of them traced: the merge pairs it with its server connection only.
    @Test func merge_showsTheClientsConnection_andMergeAllShowsEveryone() throws {
        let dir = try Self.scratch("merge")
        defer { try? FileManager.default.removeItem(at: dir) }
        let serverFile = dir.appendingPathComponent("server.jsonl").path
        let clientFile = dir.appendingPathComponent("client.jsonl").path
        let server = try ServerProcess(["--threads", "2"], traceFile: serverFile)
        defer { _ = server.stop() }
        for (index, traced) in [false, true, false].enumerated() {
            let trace = traced ? ["--trace", "json", "--trace-file", clientFile] : ["--trace", "off"]
            let client = try ChildProcess("EchoClient", ["--port", "\(server.port)"] + trace + ["m\(index)"])
            #expect(client.wait(timeout: 20) == 0, "client \(index): \(client.stderrText)")
        }
        #expect(server.stop() == 0)

        let merged = try ChildProcess("EchoClient", ["--merge", serverFile, clientFile, "--no-color"])
        #expect(merged.wait(timeout: 20) == 0, "\(merged.stderrText)")
        let ladder = merged.stdoutText
        // One accepted connection, the traced client's, and no listener.
        #expect(ladder.components(separatedBy: "LISTEN → SYN_RECEIVED").count - 1 == 1, "\(ladder)")
        #expect(!ladder.contains("CLOSED → LISTEN"), "\(ladder)")
        #expect(ladder.contains("SYN_SENT → ESTABLISHED") || ladder.contains("CLOSED → SYN_SENT"), "\(ladder)")
        // The server connection shown is the one whose peer is the client's local address.
        let client = try TraceEvent.read(jsonLinesAt: clientFile).first { $0.local != nil && $0.side == .client }
        let clientLocal = try #require(client?.local)
        let serverSide = try TraceEvent.read(jsonLinesAt: serverFile).first { $0.peer == clientLocal }
        let serverConn = try #require(serverSide?.conn)
        #expect(merged.stderrText.contains("client #1 = server #\(serverConn)"), "\(merged.stderrText)")
        // One listener however many loops (issue 14: no SO_REUSEPORT group).
        #expect(merged.stderrText.contains("1 server listener, 2 server connections"), "\(merged.stderrText)")
        #expect(merged.stderrText.contains("--merge-all shows them"), "\(merged.stderrText)")

        let all = try ChildProcess("EchoClient", ["--merge", "--merge-all", serverFile, clientFile, "--no-color"])
        #expect(all.wait(timeout: 20) == 0, "\(all.stderrText)")
        #expect(all.stdoutText.components(separatedBy: "LISTEN → SYN_RECEIVED").count - 1 == 3, "\(all.stdoutText)")
        #expect(all.stdoutText.contains("CLOSED → LISTEN"))

        // The server's trace alone: nothing to pair, everything shown, said in one line.
        let alone = try ChildProcess("EchoClient", ["--merge", serverFile, "--no-color"])
        #expect(alone.wait(timeout: 20) == 0)
        #expect(alone.stdoutText.components(separatedBy: "LISTEN → SYN_RECEIVED").count - 1 == 3)
        #expect(alone.stderrText.split(separator: "\n").count == 1 && alone.stderrText.contains("nothing to pair"), "\(alone.stderrText)")

        let misuse = try ChildProcess("EchoClient", ["--merge-all", serverFile])
        #expect(misuse.wait(timeout: 10) == 64)
        let help = try ChildProcess("EchoClient", ["--help"])
        #expect(help.wait(timeout: 10) == 0)
        #expect(help.stdoutText.contains("--merge-all"))
    }

    /// With captures (`--wire on`, root): the merge keeps the pair's segments only, folded
    /// into one; `--merge-all` keeps every connection's.
    @Test(.enabled(if: WireTracer.probe() == nil, "needs CAP_NET_RAW on the host (root)"))
    func merge_keepsOnlyThePairsSegments() throws {
        let dir = try Self.scratch("merge-wire")
        defer { try? FileManager.default.removeItem(at: dir) }
        let serverFile = dir.appendingPathComponent("server.jsonl").path
        let clientFile = dir.appendingPathComponent("client.jsonl").path
        let server = try ServerProcess(["--wire", "on"], traceFile: serverFile)
        defer { _ = server.stop() }
        let other = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "off", "other"])
        #expect(other.wait(timeout: 20) == 0)
        let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json", "--trace-file", clientFile,
                                                     "--wire", "on", "hello"])
        #expect(client.wait(timeout: 20) == 0, "\(client.stderrText)")
        // The server has closed its side (listener only left); its capture reads the rest at stop.
        #expect(waitForSockets(server.pid, atMost: 1, timeout: 10) <= 1, "\(socketsOn(port: server.port))")
        #expect(server.stop() == 0)
        func syns(_ arguments: [String]) throws -> Int {
            let merged = try ChildProcess("EchoClient", ["--merge"] + arguments + [serverFile, clientFile, "--no-color"])
            #expect(merged.wait(timeout: 20) == 0, "\(merged.stderrText)")
            return merged.stdoutText.components(separatedBy: " SYN seq=0 ").count - 1
        }
        #expect(try syns([]) == 1, "one handshake: the client's, its two captures folded")
        #expect(try syns(["--merge-all"]) == 2, "both clients' handshakes")
    }

    /// `--trace-verbose`: connect, send, recv, shutdown and close each appear as a syscall
    /// event, with messages and with stdin; without it, none.
    @Test func traceVerbose_emitsTheClientsSyscalls() throws {
        let server = try ServerProcess()
        defer { _ = server.stop() }
        func syscalls(_ arguments: [String], stdin: String? = nil) throws -> [String] {
            let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json"] + arguments,
                                          stdin: stdin != nil)
            if let stdin {
                client.stdinHandle.write(Data(stdin.utf8))
                try client.stdinHandle.close()
            }
            #expect(client.wait(timeout: 20) == 0, "\(client.stderrText)")
            return client.events.filter { $0.kind == .syscall }.map(\.cause)
        }
        for run in [try syscalls(["--trace-verbose", "hello"]), try syscalls(["--trace-verbose"], stdin: "hello\n")] {
            for call in ["connect(fd ", "send(fd ", "recv(fd ", "shutdown(fd ", "close(fd "] {
                #expect(run.contains { $0.hasPrefix(call) }, "no \(call)…) event in \(run)")
            }
            #expect(run.first?.hasPrefix("connect(") == true && run.last?.hasPrefix("close(") == true, "\(run)")
            #expect(run.contains { $0.hasSuffix("= 0: end of stream") }, "\(run)")
        }
        #expect(try syscalls(["hello"]).isEmpty)
    }

    /// `recv: Connection reset by peer (ECONNRESET)`: the call named once, the errno name once,
    /// in the JSON cause and in the text trace (the reset and refused scenarios).
    @Test func errorText_namesTheCallAndTheErrnoOnce() throws {
        for (scenario, code, call) in [("reset", "ECONNRESET", "recv"), ("refused", "ECONNREFUSED", "connect")] {
            let json = try ChildProcess("EchoClient", ["--scenario", scenario, "--slow-motion", "off", "--trace", "json"])
            #expect(json.wait(timeout: 60) == 0, "\(scenario): \(json.stderrText.suffix(400))")
            // A scenario's timeline is its trace: stderr, like every trace.
            let events = json.stderrText.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
            let errors = events.filter { $0.kind == .error }
            let error = try #require(errors.first { $0.cause.contains(code) }, "\(scenario): no \(code) error in \(errors.map(\.cause))")
            #expect(error.cause.hasPrefix(call + ":") || error.cause.hasPrefix(call + "("), "\(error.cause)")
            #expect(error.cause.components(separatedBy: call).count - 1 == 1, "call named twice: \(error.cause)")
            #expect(error.cause.components(separatedBy: "(\(code))").count - 1 == 1, "\(error.cause)")

            let text = try ChildProcess("EchoClient", ["--scenario", scenario, "--slow-motion", "off", "--no-color"],
                                        environment: ["COLUMNS": "300", "PATH": "/usr/bin:/bin"])
            #expect(text.wait(timeout: 60) == 0)
            let line = try #require(text.stderrText.split(separator: "\n").first { $0.contains("✗") && $0.contains(code) })
            #expect(line.components(separatedBy: "(\(code))").count - 1 == 1, "\(line)")
            #expect(!line.contains("\(call)(): \(call)"), "\(line)")
        }
        // The client's own refused connect: the last line and the trace line, errno name once.
        let port = try NewcomerFixesTests.freePort()
        let refused = try ChildProcess("EchoClient", ["--port", "\(port)", "--no-color", "--kernel-trace", "off", "hi"])
        #expect(refused.wait(timeout: 20) == 69)
        let lines = refused.stderrText.split(separator: "\n").filter { $0.contains("ECONNREFUSED") }
        #expect(!lines.isEmpty, "\(refused.stderrText)")
        for line in lines {
            #expect(line.components(separatedBy: "(ECONNREFUSED)").count - 1 <= 1, "\(line)")
            #expect(!line.contains("connect(): connect"), "\(line)")
        }
    }
}
