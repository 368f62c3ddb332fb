import EchoKit
import Glibc
import SocketKit
import Synchronization
import TCPTrace
import Testing

/// Issue 22 item 3: a scenario that retries tags every event with its try, the JSON carries
/// `try`, and the verdict names the try it judged; the live view saw both tries as they ran.
@Suite("Scenario retries") struct ScenarioRetryTests {
    /// A listener only; the first try stops early (as a timing-dependent scenario's would).
    final class Counter: Sendable { let value = Atomic<Int>(0) }

    struct FlakyListen: LabScenario {
        let attempts = Counter()
        var name: String { "flaky-listen" }
        var summary: String { "a listener; the first try fails" }
        var tracks: [ScenarioTrack] { [ScenarioTrack(.server, 0, "listener", [.listen])] }
        func keyStates(slowMotion: Bool) -> [KeyState] { [KeyState(.server, 0, .listen)] }
        var maxTries: Int { 3 }
        func explanation(slowMotion: Bool) -> String { "test scenario" }
        func run(_ lab: LabRun) throws {
            _ = try lab.listener()
            if attempts.value.wrappingAdd(1, ordering: .relaxed).newValue == 1 { throw ScenarioError("first try fails on purpose") }
        }
    }

    @Test("every event carries its try; the verdict and the JSON name the try judged")
    func triesAreTagged() throws {
        var rows: [String] = []
        let lock = Mutex<[String]>([])
        let live = LabLiveView(color: false, width: 80) { text in lock.locked { $0.append(text) } }
        let scenario = FlakyListen()
        let outcome = ScenarioRunner.run(scenario, slowMotion: false, live: live)
        rows = lock.locked { $0 }
        #expect(outcome.verdict.ok)
        #expect(outcome.tries == 2)
        #expect(Set(outcome.allTries.compactMap(\.attempt)) == [1, 2])
        #expect(outcome.allTries.allSatisfy { $0.attempt != nil })
        #expect(outcome.events.allSatisfy { $0.attempt == 2 })
        #expect(rows.contains { $0.contains("try 2") }, "\(rows)")
        #expect(rows.filter { $0.contains("CLOSED → LISTEN") }.count == 2, "live rows of both tries: \(rows)")
        let text = ScenarioReport.verdictText(outcome, scenario: scenario, width: 80)
        #expect(text.contains("MATCHED after 2 tries") && text.contains("judged: try 2"), "\(text)")
        guard case .realSpeed(let status) = SlowMotion.plan(.off) else { Issue.record("--slow-motion off plans real speed"); return }
        let json = ScenarioReport.json(outcome, scenario: scenario, slowMotion: status)
        let events = json.dropLast().compactMap { TraceEvent(jsonLine: Substring($0)) }
        #expect(events.count == outcome.allTries.count)
        #expect(events.allSatisfy { $0.attempt == 1 || $0.attempt == 2 })
        #expect(json.last?.contains("\"tries\":2,\"try\":2") == true, "\(json.last ?? "")")
    }
}
