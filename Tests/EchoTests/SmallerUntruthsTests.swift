import Foundation
import Glibc
import SocketKit
import TCPTrace
import TestSupport
import Testing

/// Issue 22 item 6: the smaller untruths, each checked against a real run.
@Suite("Smaller untruths") struct SmallerUntruthsTests {
    static var canCapture: Bool { Capabilities.isRoot }

    @Test("root demo: LISTEN → SYN_RECEIVED is dated and explained by the SYN, not the final ACK",
          .enabled(if: Capabilities.isRoot, "needs root for the kernel tracepoint and the wire"))
    func rootDemoSynReceived() throws {
        let child = try ChildProcess("EchoClient", ["--demo", "--trace", "json", "--wire", "on", "--kernel-trace", "on"])
        #expect(child.wait(timeout: 60) == 0, "\(child.stderrText)")
        let events = child.stderrText.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
        let syn = try #require(events.first { $0.kind == .segment && $0.wire?.flags == .syn })
        let ack = try #require(events.first { $0.kind == .segment && $0.wire?.flags == .ack && $0.wire?.sender == .client })
        let state = try #require(events.first { $0.side == .server && $0.to == .synReceived })
        #expect(state.segmentID == syn.segmentID, "\(state.cause)")
        #expect(state.timestampNs == syn.timestampNs && state.timestampNs < ack.timestampNs)
        #expect(state.cause.contains("SYN received") && !state.cause.hasPrefix("handshake's final ACK arrived"), "\(state.cause)")
        #expect(CausalOrder.inversions(events).isEmpty, "\(CausalOrder.inversions(events))")
    }

    @Test("a standalone client with --wire on writes segments and states in time order; a closed port's RST is the wire's, not 'server #0'",
          .enabled(if: Capabilities.isRoot, "needs CAP_NET_RAW for the host's wire"))
    func standaloneWireInOrder() throws {
        let probe = try Socket.listening(on: SocketAddress(numericHost: "127.0.0.1", port: 0)!, backlog: 1)
        let port = try probe.localAddress().port
        try probe.close()   // now a closed port
        let child = try ChildProcess("EchoClient", ["--port", String(port), "--wire", "on", "--kernel-trace", "off", "hello"])
        #expect(child.wait(timeout: 20) == 69)
        let lines = child.stderrText.split(separator: "\n").filter { $0.first == " " }
        let times = lines.compactMap { Double($0.split(separator: " ").first ?? "") }
        #expect(times.count >= 5)
        #expect(times == times.sorted(), "\(lines.joined(separator: "\n"))")
        let rst = try #require(lines.first { $0.contains("RST") }, "\(child.stderrText)")
        #expect(rst.split(separator: " ").dropFirst().first == "wire", "\(rst)")
        #expect(!child.stderrText.contains("server #0"))
    }

    @Test("a closed stdout ends the client quietly, like cat in a pipe (`| head -1`)")
    func closedStdout() throws {
        let server = try ServerProcess()
        defer { _ = server.stop() }
        let client = Executables.url("EchoClient").path
        let shell = try ChildProcess("/bin/bash", ["-c", "seq 1 100000 | '\(client)' --port \(server.port) --trace off | head -1; "
                                                   + "echo \"client status ${PIPESTATUS[1]}\" >&2"])
        #expect(shell.wait(timeout: 30) == 0)
        #expect(shell.stdoutText == "1\n")
        let status = shell.stderrText.split(separator: "\n").last { $0.hasPrefix("client status ") }.map { String($0.dropFirst(14)) }
        #expect(status == "0" || status == String(128 + SIGPIPE), "\(shell.stderrText)")
        #expect(!shell.stderrText.contains("Broken pipe"), "\(shell.stderrText)")
    }

    @Test("one connection is '1 connection served'")
    func singularConnection() throws {
        let child = try ChildProcess("EchoServer", ["--port", "0", "--trace", "off"])
        var port: UInt16?
        _ = child.waitForStderr { text in
            port = text.range(of: "127.0.0.1:").flatMap { UInt16(text[$0.upperBound...].prefix(while: \.isNumber)) }
            return port != nil
        }
        let client = try ChildProcess("EchoClient", ["--port", String(try #require(port)), "--trace", "off", "hi"])
        #expect(client.wait(timeout: 10) == 0)
        child.signal(SIGTERM)
        #expect(child.wait(timeout: 20) == 0)
        #expect(child.stderrText.contains("stopped: 1 connection served,"), "\(child.stderrText)")
    }

    @Test("the README's loop examples are what the server prints", .enabled(if: Capabilities.tool("taskset") != nil, "needs taskset"))
    func readmeLoopExample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        func sizing(_ wrapper: [String]) throws -> String {
            let child = try ChildProcess("EchoServer", ["--port", "0", "--trace", "off"], wrapper: wrapper)
            var line = ""
            _ = child.waitForStderr { text in
                line = text.split(separator: "\n").first { $0.contains("listening on") }.map(String.init) ?? ""
                return !line.isEmpty
            }
            child.signal(SIGTERM)
            _ = child.wait(timeout: 20)
            return line.range(of: "(").map { String(line[$0.upperBound...].dropLast()) } ?? line
        }
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        let pinned = try sizing([Capabilities.tool("taskset")!, "-c", "0"])
        #expect(pinned == "1 loop: CPU 0 of \(cpus) allowed" || cpus == 1, "\(pinned)")
        if cpus == 2 {
            #expect(readme.contains("`\(pinned)` under `taskset -c 0`"))
            let free = try sizing([])
            #expect(readme.contains("on a 2-CPU machine `\(free)`"), "server prints \(free)")
        }
    }

    @Test("status lines written to the trace's pipe land between trace lines, never inside one")
    func statusLinesWhole() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let reader = fds[0], writerFD = fds[1]
        let collected = Thread.detachNewThread_sync { () -> [UInt8] in
            var bytes: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                bytes += buffer[0..<n]
            }
            return bytes
        }
        let writer = TraceWriter(format: .text, fd: writerFD, color: false, immediate: false)
        let filler = String(repeating: "and ", count: 70)
        let statuses = Thread.detachNewThread_sync { () -> Int in
            for n in 0..<300 {
                let line = "STATUS-LINE-\(n)\n"
                _ = line.withCString { write(writerFD, $0, strlen($0)) }
                usleep(200)
            }
            return 300
        }
        for n in 0..<1500 {
            writer.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: n, kind: .info, cause: "event \(n) " + filler + "end"))
            if n % 200 == 199 { writer.flush() }   // within the queue's byte budget: nothing dropped
        }
        #expect(statuses.value() == 300)
        writer.flush()
        close(writerFD)
        let text = String(decoding: collected.value() ?? [], as: UTF8.self)
        let lines = text.split(separator: "\n")
        let statusLines = lines.filter { $0.contains("STATUS-LINE-") }
        #expect(statusLines.count == 300)
        #expect(statusLines.allSatisfy { $0.hasPrefix("STATUS-LINE-") }, "\(statusLines.first { !$0.hasPrefix("STATUS-LINE-") } ?? "")")
        let traceLines = lines.filter { $0.contains("event ") }
        #expect(traceLines.count == 1500)
        #expect(traceLines.allSatisfy { $0.hasSuffix(" end") }, "\(traceLines.first { !$0.hasSuffix(" end") } ?? "")")
        withExtendedLifetime(writer) {}
    }
}
