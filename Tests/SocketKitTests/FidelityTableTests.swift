@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit
import Testing

@Suite("Scenario verdict and fidelity table")
struct FidelityTableTests {
    func state(_ side: TraceSide, _ conn: Int, _ from: TCPState?, _ to: TCPState, _ source: ObservationSource,
               unexpected: Bool = false) -> TraceEvent {
        var event = TraceEvent(timestampNs: 1, side: side, conn: conn, kind: .state, from: from, to: to, source: source, cause: "test")
        event.unexpected = unexpected
        return event
    }

    @Test("observed, inferred and missing states are told apart")
    func statusesAreToldApart() {
        let events = [
            state(.client, 1, .closed, .synSent, .inferred),
            state(.client, 1, .synSent, .closed, .tcpInfo),
        ]
        let verdict = ScenarioVerdict.judge(RefusedScenario(), events: events, slowMotion: false, failure: nil)
        #expect(verdict.tracks[0].statuses == [.inferred, .observed(.tcpInfo)])
        #expect(verdict.ok)
        let slow = ScenarioVerdict.judge(RefusedScenario(), events: events, slowMotion: true, failure: nil)
        #expect(!slow.ok, "SYN_SENT is a key state in slow motion and was only inferred")
    }

    @Test("an RFC-forbidden observed transition is a false claim and fails the run")
    func forbiddenTransitionIsFalseClaim() {
        let events = [
            state(.client, 1, .closed, .synSent, .tcpInfo),
            state(.client, 1, .synSent, .closed, .tcpInfo),
            state(.client, 1, .closed, .timeWait, .sockDiag, unexpected: true),
        ]
        var table = FidelityTable(scenario: "refused")
        let verdict = ScenarioVerdict.judge(RefusedScenario(), events: events, slowMotion: false, failure: nil)
        #expect(verdict.falseClaims.count == 1)
        #expect(!verdict.ok)
        table.add(ScenarioOutcome(scenario: "refused", events: events, verdict: verdict, tries: 1, slowMotion: false,
                                  rttMicros: nil, firstTryOK: false))
        #expect(table.falseClaims.count == 1)
        #expect(table.matched == 0)
        #expect(table.rows.map(\.observed) == [1, 1])
        #expect(table.text().contains("runs with a false claim"))
    }
}
