import SocketKit
import TCPTrace

/// `--repeat N`: how often each expected state was observed, inferred or missing over N runs,
/// which runs made a false claim, and how many matched on the first try.
public struct FidelityTable: Sendable {
    public struct Row: Sendable, Equatable {
        public var track: String
        public var state: TCPState
        public var observed = 0
        public var inferred = 0
        public var missing = 0
        /// How it was observed, by source (tcp_info / sock_diag).
        public var sources: [String: Int] = [:]
    }

    public let scenario: String
    public private(set) var runs = 0
    public private(set) var matched = 0
    public private(set) var firstTry = 0
    public private(set) var totalTries = 0
    public private(set) var rows: [Row] = []
    /// Run number (1-based) and the claims it made.
    public private(set) var falseClaims: [(run: Int, claims: [String])] = []
    public private(set) var failures: [(run: Int, reason: String)] = []

    public init(scenario: String) { self.scenario = scenario }

    public mutating func add(_ outcome: ScenarioOutcome) {
        runs += 1
        totalTries += outcome.tries
        if outcome.verdict.ok { matched += 1 }
        if outcome.firstTryOK { firstTry += 1 }
        for track in outcome.verdict.tracks {
            for (state, status) in zip(track.track.states, track.statuses) {
                let index = rows.firstIndex { $0.track == track.track.name && $0.state == state }
                    ?? { rows.append(Row(track: track.track.name, state: state)); return rows.count - 1 }()
                switch status {
                case .observed(let source):
                    rows[index].observed += 1
                    rows[index].sources[source.rawValue, default: 0] += 1
                case .inferred: rows[index].inferred += 1
                case .missing: rows[index].missing += 1
                }
            }
        }
        let claims = outcome.verdict.falseClaims
        if !claims.isEmpty { falseClaims.append((runs, claims)) }
        if !outcome.verdict.ok {
            let reason = outcome.verdict.failure
                ?? (outcome.verdict.unobservedKeys.isEmpty ? "sequence differs"
                    : "key state not observed: " + outcome.verdict.unobservedKeys.map { "\($0.side.rawValue) #\($0.conn) \($0.state.name)" }.joined(separator: ", "))
            failures.append((runs, reason))
        }
    }

    public func text() -> String {
        var out = "Fidelity of \(scenario) over \(runs) runs:\n"
        out += "  " + TextTraceRenderer.pad("connection", 12) + TextTraceRenderer.pad("state", 14)
            + TextTraceRenderer.pad("observed", 10, left: true) + TextTraceRenderer.pad("inferred", 10, left: true)
            + TextTraceRenderer.pad("missing", 9, left: true) + "  observed via\n"
        for row in rows {
            let via = row.sources.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            out += "  " + TextTraceRenderer.pad(row.track, 12) + TextTraceRenderer.pad(row.state.name, 14)
                + TextTraceRenderer.pad(String(row.observed), 10, left: true) + TextTraceRenderer.pad(String(row.inferred), 10, left: true)
                + TextTraceRenderer.pad(String(row.missing), 9, left: true) + "  " + via + "\n"
        }
        out += "  matched: \(matched)/\(runs); on the first try: \(firstTry)/\(runs); tries in total: \(totalTries)\n"
        out += "  runs with a false claim (an observed transition RFC 9293 forbids): \(falseClaims.count)\n"
        for (run, claims) in falseClaims.prefix(10) { out += "    run \(run): " + claims.joined(separator: "; ") + "\n" }
        for (run, reason) in failures.prefix(10) { out += "  run \(run) did not match: \(reason)\n" }
        if failures.count > 10 { out += "  ... \(failures.count - 10) more\n" }
        return out
    }

    public func json(slowMotion: SlowMotionStatus) -> String {
        let q = JSONTraceRenderer.quoted
        let rowsJSON = rows.map { row in
            "{\"track\":\(q(row.track)),\"state\":\(q(row.state.name)),\"observed\":\(row.observed),\"inferred\":\(row.inferred),\"missing\":\(row.missing)}"
        }.joined(separator: ",")
        let claims = falseClaims.map { "{\"run\":\($0.run),\"claims\":[\($0.claims.map(q).joined(separator: ","))]}" }.joined(separator: ",")
        return "{\"v\":\(JSONTraceRenderer.formatVersion),\"event\":\"fidelity\",\"name\":\(q(scenario)),\"runs\":\(runs),\"matched\":\(matched),\"first_try\":\(firstTry)"
            + ",\"tries\":\(totalTries),\"slow_motion\":\(slowMotion.json),\"states\":[\(rowsJSON)],\"false_claims\":[\(claims)]}"
    }
}
