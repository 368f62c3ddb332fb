import Foundation
import Testing
import TestSupport
import TCPTrace

/// Issue 19, item 7: every JSON line the programs write validates against docs/trace.schema.json
/// (the lean format: only keys that apply, never null), checked with the small validator in
/// JSONSchemaValidator.swift on real runs: the demo, a scenario, a server and its clients.
@Suite(.serialized) struct TraceSchemaTests {
    static let schemaPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/trace.schema.json").path

    /// Validates each line that starts with `{`; returns how many events of each type it saw.
    @discardableResult
    static func validate(_ text: String, _ what: String, minimum: Int = 1,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Int] {
        let validator = try JSONSchemaValidator(schemaAt: schemaPath)
        var kinds: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("{") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            let problems = try validator.problems(object)
            #expect(problems.isEmpty, "\(what): \(problems.joined(separator: "; "))\n\(line)", sourceLocation: sourceLocation)
            #expect(!line.contains(":null"), "\(what): a null value\n\(line)", sourceLocation: sourceLocation)
            kinds[(object as? [String: Any])?["event"] as? String ?? "?", default: 0] += 1
        }
        #expect(kinds.values.reduce(0, +) >= minimum, "\(what): only \(kinds) events", sourceLocation: sourceLocation)
        return kinds
    }

    /// The validator can fail: a null, a missing key, an unknown key, a wrong type, a state
    /// event without `to`, and a `wire` object on a state event are each rejected.
    @Test func theValidatorRejectsWhatTheSchemaForbids() throws {
        let validator = try JSONSchemaValidator(schemaAt: Self.schemaPath)
        let good = #"{"v":2,"ts_ns":1,"time":"2026-12-04T07:43:08.442070Z","side":"server","pid":1,"conn":1,"event":"state","to":"CLOSE_WAIT","source":"tcp_info","cause":"recv()=0"}"#
        func object(_ text: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(text.utf8)) }
        #expect(try validator.problems(object(good)).isEmpty)
        let bad = [
            good.replacingOccurrences(of: #""to":"CLOSE_WAIT","#, with: #""to":null,"#),
            good.replacingOccurrences(of: #""cause":"recv()=0""#, with: #""causes":"recv()=0""#),
            good.replacingOccurrences(of: #""conn":1"#, with: #""conn":"1""#),
            good.replacingOccurrences(of: #""to":"CLOSE_WAIT","#, with: ""),
            good.replacingOccurrences(of: #""to":"CLOSE_WAIT""#, with: #""to":"CLOSE_WAITING""#),
            good.replacingOccurrences(of: #""v":2"#, with: #""v":1"#),
            good.replacingOccurrences(of: "}", with: #","wire":{"src":"a"}}"#),
            good.replacingOccurrences(of: "}", with: #","errno":104}"#),
        ]
        for line in bad {
            #expect(try !validator.problems(object(line)).isEmpty, "accepted: \(line)")
        }
    }

    /// The demo: both sides in one process, the kernel tracepoint as root, and with captures
    /// (`--wire on`) where the host allows it, so `segment` events are checked too.
    @Test func demo_everyEventValidates() throws {
        let wire = WireTracer.probe() == nil
        let child = try ChildProcess("EchoClient", ["--demo", "--trace", "json"] + (wire ? ["--wire", "on"] : []))
        #expect(child.wait(timeout: 60) == 0, "\(child.stderrText.suffix(400))")
        let kinds = try Self.validate(child.stderrText, "demo", minimum: 10)
        #expect(kinds["state", default: 0] >= 8, "\(kinds)")
        if wire { #expect(kinds["segment", default: 0] >= 6, "\(kinds)") }
        // The unprivileged sources (what a non-root user gets): tcp_info objects, sock_diag timers.
        let unprivileged = try ChildProcess("EchoClient", ["--demo", "--trace", "json", "--kernel-trace", "off"])
        #expect(unprivileged.wait(timeout: 60) == 0, "\(unprivileged.stderrText.suffix(400))")
        try Self.validate(unprivileged.stderrText, "demo --kernel-trace off", minimum: 10)
        #expect(unprivileged.stderrText.contains("\"tcp_info\":{"), "no tcp_info object to check")
    }

    /// A scenario at real speed, twice: its events and the `scenario` summary, then the
    /// `fidelity` table of `--repeat`.
    @Test func scenario_eventsAndSummaryValidate() throws {
        let once = try ChildProcess("EchoClient", ["--scenario", "client-close", "--slow-motion", "off", "--trace", "json"])
        #expect(once.wait(timeout: 60) == 0, "\(once.stderrText.suffix(400))")
        let kinds = try Self.validate(once.stdoutText + "\n" + once.stderrText, "scenario", minimum: 5)
        #expect(kinds["scenario"] == 1, "\(kinds)")
        let repeated = try ChildProcess("EchoClient", ["--scenario", "server-close", "--slow-motion", "off", "--repeat", "2",
                                                        "--trace", "json"])
        #expect(repeated.wait(timeout: 60) == 0, "\(repeated.stderrText.suffix(400))")
        let table = try Self.validate(repeated.stdoutText + "\n" + repeated.stderrText, "scenario --repeat")
        #expect(table["fidelity"] == 1, "\(table)")
    }

    /// A server and its clients: an echo with `--trace-verbose` (syscall and data events), a
    /// client refused by a closed port (an error event), and the server's own trace file.
    @Test func serverAndClients_everyEventValidates() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("schema-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let serverFile = dir.appendingPathComponent("server.jsonl").path
        let server = try ServerProcess(["--trace-verbose"], traceFile: serverFile)
        defer { _ = server.stop() }
        let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json", "--trace-verbose", "hello\u{1b}[2J"])
        #expect(client.wait(timeout: 30) == 0, "\(client.stderrText.suffix(400))")
        let clientKinds = try Self.validate(client.stderrText, "client", minimum: 5)
        #expect(clientKinds["data", default: 0] >= 1 && clientKinds["syscall", default: 0] >= 1, "\(clientKinds)")
        #expect(clientKinds["verdict"] == 1, "\(clientKinds)")
        #expect(server.stop() == 0)
        let serverKinds = try Self.validate(try String(contentsOfFile: serverFile, encoding: .utf8), "server", minimum: 5)
        #expect(serverKinds["state", default: 0] >= 4, "\(serverKinds)")

        let refused = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json", "x"])
        #expect(refused.wait(timeout: 30) != 0)
        let refusedKinds = try Self.validate(refused.stderrText, "refused client")
        #expect(refusedKinds["error", default: 0] >= 1, "\(refusedKinds)")
    }
}
