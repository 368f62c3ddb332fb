import SocketKit
import TCPTrace

/// Runs a scenario, retrying up to its `maxTries` while a try does not match.
public struct ScenarioOutcome: Sendable {
    public var scenario: String
    public var events: [TraceEvent]
    public var verdict: ScenarioVerdict
    /// Tries it took (1 when the first matched); equals maxTries when none did.
    public var tries: Int
    public var slowMotion: Bool
    public var rttMicros: UInt32?
    /// The first try's verdict, for fidelity tables ("matched on the first try").
    public var firstTryOK: Bool
}

public enum ScenarioRunner {
    /// Each try gets fresh sockets and a fresh collector; the last try's events are returned.
    public static func run(_ scenario: any LabScenario, slowMotion: Bool,
                           progress: ((String) -> Void)? = nil) -> ScenarioOutcome {
        var outcome: ScenarioOutcome?
        for attempt in 1...max(1, scenario.maxTries) {
            let lab = LabRun(slowMotion: slowMotion, progress: progress)
            var failure: String?
            do {
                try scenario.run(lab)
            } catch {
                failure = "\(error)"
            }
            lab.finish()
            let events = lab.collector.events
            let verdict = ScenarioVerdict.judge(scenario, events: events, slowMotion: slowMotion, failure: failure)
            outcome = ScenarioOutcome(scenario: scenario.name, events: events, verdict: verdict, tries: attempt,
                                      slowMotion: slowMotion, rttMicros: lab.measuredRTTMicros,
                                      firstTryOK: outcome?.firstTryOK ?? verdict.ok)
            if verdict.ok { break }
            if attempt < scenario.maxTries { progress?("try \(attempt) did not match (\(failure ?? "sequence differs")); trying again") }
        }
        return outcome!
    }
}
