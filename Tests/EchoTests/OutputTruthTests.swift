import Foundation
import Glibc
import SocketKit
import TCPTrace
import TestSupport
import Testing

/// Issue 22: options honoured or refused, 80 columns in a real terminal, no effect before its
/// cause, a live lab that Ctrl-C can stop.
@Suite("Output tells the truth and fits") struct OutputTruthTests {
    static var asNobody: [String] {
        Capabilities.canRunBuiltExecutablesAsNobody ? [UnprivilegedTests.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups"] : []
    }

    // MARK: item 4 — options honoured or refused

    @Test("the four modes exclude each other and stray words are refused (exit 64, one line)",
          arguments: [["--demo", "--scenario", "reset"], ["--load", "--scenario", "reset"], ["--demo", "extra", "words"],
                      ["--merge", "--demo", "x.jsonl"], ["--scenario", "reset", "stray"], ["--load", "--demo"]])
    func modesConflict(_ arguments: [String]) throws {
        let child = try ChildProcess("EchoClient", arguments)
        #expect(child.wait(timeout: 10) == 64, "\(arguments): \(child.stderrText)")
        let lines = child.stderrText.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("EchoClient: "), "\(child.stderrText)")
        #expect(child.stdoutText.isEmpty)
    }

    @Test("--scenario --trace-file writes the lab's trace there, and nothing on stdout")
    func scenarioTraceFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sk-scenario-\(getpid()).jsonl").path
        defer { unlink(path) }
        let child = try ChildProcess("EchoClient", ["--scenario", "refused", "--slow-motion", "off", "--wire", "off",
                                                    "--trace", "json", "--trace-file", path])
        #expect(child.wait(timeout: 60) == 0, "\(child.stderrText)")
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.contains { TraceEvent(jsonLine: $0)?.kind == .state })
        #expect(lines.last?.contains("\"event\":\"scenario\"") == true)
        #expect(child.stdoutText.isEmpty, "stdout: \(child.stdoutText)")
    }

    @Test("an unwritable output fails before the run, in under a second, with 73",
          arguments: [["--scenario", "time-wait", "--picture", "/nonexistent-dir/x.svg"],
                      ["--scenario", "time-wait", "--state-diagram", "/nonexistent-dir/x.svg"],
                      ["--scenario", "time-wait", "--pcap", "/nonexistent-dir/x.pcapng"],
                      ["--scenario", "time-wait", "--trace-file", "/nonexistent-dir/x"],
                      ["--demo", "--picture", "/nonexistent-dir/x.html"]])
    func unwritableOutputFailsEarly(_ arguments: [String]) throws {
        let start = MonotonicClock.now()
        let child = try ChildProcess("EchoClient", arguments)
        let status = child.wait(timeout: 10)
        let seconds = Double(MonotonicClock.now() - start) / 1e9
        #expect(status == 73, "\(arguments): \(child.stderrText)")
        #expect(seconds < 1, "took \(seconds) s")
        #expect(child.stderrText.split(separator: "\n").count == 1, "\(child.stderrText)")
    }

    @Test("as nobody, --scenario --trace-file /root/x is refused with 73 before the run",
          .enabled(if: Capabilities.canRunBuiltExecutablesAsNobody, "needs root to switch to nobody"))
    func traceFileUnwritableAsNobody() throws {
        let child = try ChildProcess(UnprivilegedTests.setpriv!, ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                                  Executables.url("EchoClient").path,
                                                                  "--scenario", "time-wait", "--trace-file", "/root/sk-x"])
        #expect(child.wait(timeout: 10) == 73, "\(child.stderrText)")
    }

    @Test("the server refuses an unwritable --pcap before it starts (73)")
    func serverPcapChecked() throws {
        let child = try ChildProcess("EchoServer", ["--port", "0", "--pcap", "/nonexistent-dir/x.pcapng"])
        #expect(child.wait(timeout: 10) == 73, "\(child.stderrText)")
    }

    @Test("the README's exit-status paragraph lists 73 for every output file")
    func readmeListsCantCreate() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("73 cannot create an output file (`--trace-file`, `--picture`, `--state-diagram`, `--pcap`)"))
    }

    // MARK: item 2 — 80 columns in a real terminal

    static let widths = [80, 100, 120]

    @Test("--help fits the terminal (both executables), and $COLUMNS or 80 when piped", arguments: widths)
    func helpFits(_ columns: Int) throws {
        for program in ["EchoClient", "EchoServer"] {
            let run = try TerminalRun.run(program, ["--help"], columns: columns, timeout: 20)
            #expect(run.status == 0)
            #expect(run.tooWide(columns).isEmpty, "\(program) at \(columns): \(run.tooWide(columns))")
            #expect(run.text.contains("--trace-file"))
            let piped = try ChildProcess(program, ["--help"], environment: ["COLUMNS": String(columns)])
            #expect(piped.wait() == 0)
            let wide = piped.stdoutText.split(separator: "\n").filter { $0.count > columns }
            #expect(wide.isEmpty, "\(program) piped, COLUMNS=\(columns): \(wide)")
        }
        let bare = try ChildProcess("EchoClient", ["--help"], environment: ["PATH": "/usr/bin:/bin"])
        #expect(bare.wait() == 0)
        #expect(bare.stdoutText.split(separator: "\n").allSatisfy { $0.count <= 80 })
    }

    @Test("the demo fits the terminal; state names and numbers are never split", arguments: widths)
    func demoFits(_ columns: Int) throws {
        let run = try TerminalRun.run("EchoClient", ["--demo", "--kernel-trace", "off"], columns: columns, timeout: 60)
        #expect(run.status == 0, "\(run.text)")
        #expect(run.tooWide(columns).isEmpty, "at \(columns): \(run.tooWide(columns))")
        #expect(run.text.contains("FIN_WAIT_1"))
        for piece in run.allPieces { #expect(!piece.hasSuffix("FIN_WAIT") && !piece.hasSuffix("CLOSE_"), "split: \(piece)") }
    }

    @Test("every scenario fits the terminal, live rows and report", arguments: ["client-close", "server-close", "half-close",
          "simultaneous-open", "simultaneous-close", "close-wait-leak", "reset", "refused", "backlog-full"], widths)
    func scenarioFits(_ name: String, _ columns: Int) throws {
        let run = try TerminalRun.run("EchoClient", ["--scenario", name, "--kernel-trace", "off"], columns: columns, timeout: 80)
        #expect(run.status == 0 || run.status == 1, "\(run.text)")
        #expect(run.text.contains("Verdict:"))
        #expect(run.tooWide(columns).isEmpty, "\(name) at \(columns): \(run.tooWide(columns))")
    }

    @Test("at 120 columns the descriptions line up in one column")
    func descriptionsAligned() throws {
        let run = try TerminalRun.run("EchoClient", ["--demo", "--kernel-trace", "off", "--wire", "off"], columns: 120, timeout: 60)
        let header = try #require(run.screenLines.first { $0.contains("CLIENT") && $0.contains("what happened") })
        let column = try #require(header.range(of: "what happened")).lowerBound.utf16Offset(in: header)
        let rows = run.screenLines.filter { $0.contains(" → ") && $0.drop { $0 == " " }.hasPrefix("0.") }
        let starts = Set(rows.map { row -> Int in
            let chars = Array(row)
            return (column..<chars.count).first { chars[$0] != " " && chars[$0 - 1] == " " } ?? -1
        })
        #expect(rows.count >= 8)
        #expect(starts == [column], "description columns: \(starts), header at \(column)\n\(rows.joined(separator: "\n"))")
    }

    @Test("the server with a client fits the terminal", arguments: widths)
    func serverFits(_ columns: Int) throws {
        // A port the kernel just handed out and took back: free now.
        let probe = try Socket.listening(on: SocketAddress(numericHost: "127.0.0.1", port: 0)!, backlog: 1)
        let port = try probe.localAddress().port
        try probe.close()
        let pty = Thread.detachNewThread_sync {
            try? TerminalRun.run("EchoServer", ["--port", String(port), "--kernel-trace", "off"], columns: columns, interruptAfter: 3, timeout: 15)
        }
        Thread.sleep(forTimeInterval: 1)
        let client = try ChildProcess("EchoClient", ["--port", String(port), "hello", "world"])
        _ = client.wait(timeout: 10)
        let run = try #require(pty.value() ?? nil)
        #expect(run.text.contains("CLOSE_WAIT"), "\(run.text)")
        #expect(run.tooWide(columns).isEmpty, "\(run.tooWide(columns))")
    }

    // MARK: item 1 — causal order

    @Test("50 demos with the wire and the kernel trace off, as nobody: no effect before its cause")
    func demoCausalOrder() throws {
        var inversions: [String] = []
        var restamped = 0
        for _ in 0..<50 {
            let child = try ChildProcess(Self.asNobody.first ?? "EchoClient",
                                         Array(Self.asNobody.dropFirst()) + (Self.asNobody.isEmpty ? [] : [Executables.url("EchoClient").path])
                                         + ["--demo", "--wire", "off", "--kernel-trace", "off", "--trace", "json"])
            #expect(child.wait(timeout: 30) == 0, "\(child.stderrText)")
            let events = child.stderrText.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
            #expect(events.filter { $0.kind == .state }.count >= 9)
            inversions += CausalOrder.inversions(events).map(\.description)
            restamped += events.filter { $0.cause.contains("inside its interval") }.count
            // Each state's stamp lies in the interval it carries.
            for e in events where e.kind == .state {
                if let earliest = e.earliestNs { #expect(e.timestampNs >= earliest, "\(e.cause)") }
                if let latest = e.latestNs { #expect(e.timestampNs <= latest, "\(e.cause)") }
            }
            // The stamps are in time order in the output, like the ladder.
            #expect(events.map(\.timestampNs) == events.map(\.timestampNs).sorted())
        }
        #expect(inversions.isEmpty, "\(inversions.count) inversions: \(inversions.prefix(5))")
        print("causal order: 50 demos, \(inversions.count) inversions, \(restamped) states restamped within their interval")
    }

    @Test("a raw reading that contradicts the order is restamped inside its interval and says so")
    func restampExplained() {
        var fin = TraceEvent(timestampNs: 2_000, side: .client, conn: 1, local: "127.0.0.1:5000", peer: "127.0.0.1:7007",
                             kind: .state, from: .established, to: .finWait1, source: .tcpInfo, cause: "shutdown(SHUT_WR)")
        fin.earliestNs = 900
        fin.latestNs = 2_000
        var closeWait = TraceEvent(timestampNs: 1_500, side: .server, conn: 1, local: "127.0.0.1:7007", peer: "127.0.0.1:5000",
                                   kind: .state, from: .established, to: .closeWait, source: .tcpInfo, cause: "recv()=0")
        closeWait.earliestNs = 100
        closeWait.latestNs = 1_500
        let raw = [closeWait, fin]
        #expect(CausalOrder.inversions(raw).count == 1)
        let fixed = CausalOrder.apply(raw)
        #expect(CausalOrder.inversions(fixed).isEmpty)
        #expect(fixed.map(\.to) == [.finWait1, .closeWait])
        let moved = try! #require(fixed.first)
        #expect(moved.timestampNs >= 900 && moved.timestampNs < 1_500)
        #expect(moved.cause.contains("before its reading, inside its interval"))
        #expect(fixed[1].cause == "recv()=0")
    }

    // MARK: item 3 — the live lab

    @Test("--scenario time-wait shows the handshake within 2 s; Ctrl-C after 8 s prints the states seen, exit 130",
          .needsTimeWaitRoom)
    func liveLabInterrupted() throws {
        let run = try TerminalRun.run("EchoClient", ["--scenario", "time-wait", "--kernel-trace", "off"], columns: 80,
                                      interruptAfter: 8, timeout: 30)
        #expect(run.status == 130, "\(run.text)")
        let handshake = run.chunks.first { $0.1.contains("SYN_SENT → ESTABLISHED") }
        #expect(handshake != nil && handshake!.0 < 2, "handshake at \(handshake?.0 ?? -1) s")
        // With a capture (the header says so), its segments are live too: the SYN+ACK arrow within
        // 2 s, printed once before the interruption's report (which shows what was seen again).
        if run.text.contains("each segment as it is captured") {
            let synAck = run.chunks.first { $0.1.contains("SYN+ACK seq=0") }
            #expect(synAck != nil && synAck!.0 < 2, "SYN+ACK row at \(synAck?.0 ?? -1) s")
            let live = run.text.components(separatedBy: "interrupted (").first ?? ""
            #expect(live.components(separatedBy: "SYN+ACK seq=0").count == 2, "\(live)")
        }
        #expect(run.text.contains("interrupted"))
        #expect(run.text.contains("TIME_WAIT"))
        #expect(run.text.contains("client #1: "))
        // The countdown is one updating line: no newline between two countdown readings.
        let countdown = run.screenLines.filter { $0.contains("s left") && $0.hasPrefix("…") }
        #expect(countdown.count <= 1, "\(countdown)")
        #expect(run.tooWide(80).isEmpty, "\(run.tooWide(80))")
    }
}

extension Thread {
    /// Runs `body` on a new thread; `value()` waits for it (bounded by the body's own timeout).
    static func detachNewThread_sync<T: Sendable>(_ body: @escaping @Sendable () -> T) -> Box<T> {
        let box = Box<T>()
        Thread.detachNewThread { box.set(body()) }
        return box
    }

    final class Box<T: Sendable>: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: T?
        func set(_ value: T) { result = value; done.signal() }
        func value() -> T? { _ = done.wait(timeout: .now() + 60); return result }
    }
}
