import SocketKit
import TCPTrace

/// Prints a scenario run: the merged two-sided timeline, then the verdict and explanation
/// (text), or every event as JSON Lines ending with one `scenario` object (json).
public enum ScenarioReport {
    public static func text(_ outcome: ScenarioOutcome, scenario: any LabScenario, slowMotionLine: String,
                            color: Bool, width: Int? = nil) -> String {
        var out = "Scenario \(scenario.name): \(scenario.summary)\n\(slowMotionLine)\n\n"
        out += LadderRenderer(color: color, width: width).render(outcome.events).joined(separator: "\n")
        out += "\n\n" + LadderRenderer.legend(width: width) + "\n"
        if let wire = outcome.wireSummary { out += LadderRenderer.wireLegend + "\n" + wire + "\n" }
        out += "\n" + verdictText(outcome, scenario: scenario)
        out += "\nWhat happened: " + scenario.explanation(slowMotion: outcome.slowMotion) + "\n"
        return out
    }

    public static func verdictText(_ outcome: ScenarioOutcome, scenario: any LabScenario) -> String {
        let verdict = outcome.verdict
        var out = "Verdict:\n"
        for track in verdict.tracks {
            let name = TextTraceRenderer.pad("\(track.track.name) (\(track.track.label))", 34)
            out += "  \(name) expected: " + track.track.states.map(\.name).joined(separator: " → ") + "\n"
            out += "  " + String(repeating: " ", count: 34) + " got:      "
                + (track.seen.isEmpty ? "nothing" : track.seen.joined(separator: " → "))
                + (track.matched ? "   ✓" : "   ✗ differs") + "\n"
            let parts = zip(track.track.states, track.statuses).map { "\($0.name) \($1.word)" }
            out += "  " + String(repeating: " ", count: 34) + " how:      " + parts.joined(separator: ", ") + "\n"
        }
        let keys = verdict.keyStates.map { "\($0.side.rawValue) #\($0.conn) \($0.state.name)" }
        if !keys.isEmpty {
            out += "  key states that must be observed: " + keys.joined(separator: ", ")
            out += verdict.unobservedKeys.isEmpty ? " — all observed\n"
                : " — NOT observed: " + verdict.unobservedKeys.map { "\($0.side.rawValue) #\($0.conn) \($0.state.name)" }.joined(separator: ", ") + "\n"
        }
        for check in verdict.wireChecks ?? [] {
            out += "  wire: \(check.description): \(check.passed ? "✓" : "✗") \(check.evidence)\n"
        }
        for claim in verdict.falseClaims { out += "  false claim: \(claim)\n" }
        if let failure = verdict.failure { out += "  stopped early: \(failure)\n" }
        let tries = "\(outcome.tries) \(outcome.tries == 1 ? "try" : "tries") (at most \(scenario.maxTries))"
        out += verdict.ok ? "  MATCHED after \(tries)\n" : "  DID NOT MATCH after \(tries)\n"
        return out
    }

    /// The events, then `{"event":"scenario",...}` as the last line.
    public static func json(_ outcome: ScenarioOutcome, scenario: any LabScenario, slowMotion: SlowMotionStatus) -> [String] {
        let sorted = outcome.events.enumerated().sorted {
            ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset)
        }.map(\.element)
        return sorted.map(JSONTraceRenderer.render) + [summaryJSON(outcome, scenario: scenario, slowMotion: slowMotion)]
    }

    public static func summaryJSON(_ outcome: ScenarioOutcome, scenario: any LabScenario, slowMotion: SlowMotionStatus) -> String {
        let q = JSONTraceRenderer.quoted
        func sequences(_ body: (TrackVerdict) -> String) -> String {
            "{" + outcome.verdict.tracks.map { q($0.track.name) + ":" + body($0) }.joined(separator: ",") + "}"
        }
        let expected = sequences { "[" + $0.track.states.map { q($0.name) }.joined(separator: ",") + "]" }
        let observed = sequences { track in
            "[" + zip(track.track.states, track.statuses).map { state, status in
                let how: String
                switch status {
                case .observed(let source): how = source.rawValue
                case .inferred: how = "inferred"
                case .missing: how = "missing"
                }
                return "{\"state\":\(q(state.name)),\"how\":\(q(how))}"
            }.joined(separator: ",") + "]"
        }
        let seen = sequences { "[" + $0.seen.map(q).joined(separator: ",") + "]" }
        let keys = outcome.verdict.keyStates.map { key in
            let ok = !outcome.verdict.unobservedKeys.contains(key)
            return "{\"side\":\(q(key.side.rawValue)),\"conn\":\(key.conn),\"state\":\(q(key.state.name)),\"observed\":\(ok)}"
        }
        var out = "{\"v\":\(JSONTraceRenderer.formatVersion),\"event\":\"scenario\",\"name\":\(q(scenario.name)),\"ok\":\(outcome.verdict.ok),\"tries\":\(outcome.tries)"
        out += ",\"max_tries\":\(scenario.maxTries),\"first_try_ok\":\(outcome.firstTryOK)"
        out += ",\"slow_motion\":\(slowMotion.json),\"expected\":\(expected),\"observed\":\(observed),\"seen\":\(seen)"
        out += ",\"key_states\":[\(keys.joined(separator: ","))]"
        out += ",\"false_claims\":[\(outcome.verdict.falseClaims.map(q).joined(separator: ","))]"
        if let failure = outcome.verdict.failure { out += ",\"failure\":\(q(failure))" }   // lean format: absent, not null
        let checks = outcome.verdict.wireChecks.map { list in
            "[" + list.map { "{\"check\":\(q($0.description)),\"ok\":\($0.passed),\"evidence\":\(q($0.evidence))}" }.joined(separator: ",") + "]"
        }
        if let checks { out += ",\"wire\":\(checks)" }
        out += ",\"explanation\":\(q(scenario.explanation(slowMotion: outcome.slowMotion)))}"
        return out
    }
}
