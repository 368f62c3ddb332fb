import SocketKit
import TCPTrace

/// Prints a scenario run: the merged two-sided timeline, then the verdict and explanation
/// (text), or every event as JSON Lines ending with one `scenario` object (json).
public enum ScenarioReport {
    public static func text(_ outcome: ScenarioOutcome, scenario: any LabScenario, slowMotionLine: String,
                            color: Bool, width: Int? = nil) -> String {
        var out = wrap("Scenario \(scenario.name): \(scenario.summary)\n\(slowMotionLine)", width) + "\n\n"
        out += LadderRenderer(color: color, width: width).render(outcome.events).joined(separator: "\n")
        out += "\n\n" + LadderRenderer.legend(width: width) + "\n"
        if let wire = outcome.wireSummary { out += wrap(LadderRenderer.wireLegend + "\n" + wire, width) + "\n" }
        out += "\n" + verdictText(outcome, scenario: scenario, width: width)
        out += wrap("What happened: " + scenario.explanation(slowMotion: outcome.slowMotion), width) + "\n"
        return out
    }

    /// Prose for a terminal of `width` columns, wrapped at spaces with a hanging indent of 2;
    /// unchanged for files and pipes (nil).
    static func wrap(_ text: String, _ width: Int?) -> String {
        width.map { TextWrap.paragraph(text, width: $0, indent: 2) } ?? text
    }

    /// `head` then `words` wrapped at spaces to `width`, continuation lines at `indent`.
    static func fit(_ head: String, _ text: String, width: Int?, indent: Int) -> String {
        guard let width else { return head + text }
        return TextWrap.fit(head.count > 0 && head.last == " " ? String(head.dropLast()) : head, firstColumns: head.count - 1,
                            words: TextWrap.words(text), width: width, indent: indent, color: false, minimumRoom: 8)
    }

    public static func verdictText(_ outcome: ScenarioOutcome, scenario: any LabScenario, width: Int? = nil) -> String {
        let verdict = outcome.verdict
        var out = "Verdict:\n"
        // Files and wide terminals: the sequences in a column beside the track's name; a
        // narrower terminal puts the name on a line of its own.
        let wide = (width ?? Int.max) >= 120
        for track in verdict.tracks {
            let label = "\(track.track.name) (\(track.track.label))"
            let lead = wide ? "  " + TextTraceRenderer.pad(label, 34) + " " : "    "
            if !wide { out += "  " + label + "\n" }
            let blank = String(repeating: " ", count: lead.count)
            let indent = lead.count + 10
            out += fit(lead + "expected: ", track.track.states.map(\.name).joined(separator: " → "), width: width, indent: indent) + "\n"
            out += fit(blank + "got:      ", (track.seen.isEmpty ? "nothing" : track.seen.joined(separator: " → "))
                       + (track.matched ? "   ✓" : "   ✗ differs"), width: width, indent: indent) + "\n"
            let parts = zip(track.track.states, track.statuses).map { "\($0.name) \($1.word)," }
            var how = parts.joined(separator: " ")
            if how.hasSuffix(",") { how.removeLast() }
            out += fit(blank + "how:      ", how, width: width, indent: indent) + "\n"
        }
        let keys = verdict.keyStates.map { "\($0.side.rawValue) #\($0.conn) \($0.state.name)" }
        var lines: [String] = []
        if !keys.isEmpty {
            lines.append("key states that must be observed: " + keys.joined(separator: ", ")
                + (verdict.unobservedKeys.isEmpty ? " — all observed"
                    : " — NOT observed: " + verdict.unobservedKeys.map { "\($0.side.rawValue) #\($0.conn) \($0.state.name)" }.joined(separator: ", ")))
        }
        for check in verdict.wireChecks ?? [] {
            lines.append("wire: \(check.description): \(check.passed ? "✓" : "✗") \(check.evidence)")
        }
        for claim in verdict.falseClaims { lines.append("false claim: \(claim)") }
        if let failure = verdict.failure { lines.append("stopped early: \(failure)") }
        let tries = "\(outcome.tries) \(outcome.tries == 1 ? "try" : "tries") (at most \(scenario.maxTries))"
        lines.append(verdict.ok ? "MATCHED after \(tries)" : "DID NOT MATCH after \(tries)")
        if outcome.tries > 1 { lines.append("judged: try \(outcome.tries); the earlier tries did not match") }
        for line in lines { out += wrap("  " + line, width) + "\n" }
        return out
    }

    /// The events, then `{"event":"scenario",...}` as the last line.
    public static func json(_ outcome: ScenarioOutcome, scenario: any LabScenario, slowMotion: SlowMotionStatus) -> [String] {
        let all = outcome.allTries.isEmpty ? outcome.events : outcome.allTries
        let sorted = all.enumerated().sorted {
            ($0.element.attempt ?? 0, $0.element.timestampNs, $0.offset) < ($1.element.attempt ?? 0, $1.element.timestampNs, $1.offset)
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
        var out = "{\"v\":\(JSONTraceRenderer.formatVersion),\"event\":\"scenario\",\"name\":\(q(scenario.name)),\"ok\":\(outcome.verdict.ok),\"tries\":\(outcome.tries),\"try\":\(outcome.tries)"
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
