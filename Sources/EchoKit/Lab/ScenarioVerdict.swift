import SocketKit
import TCPTrace

/// How one expected state showed up in a run.
public enum StateStatus: Sendable, Equatable {
    /// Read from the kernel: tcp_info on the fd, sock_diag after close(), or the tracepoint.
    case observed(ObservationSource)
    /// Filled in from RFC 9293 between two observations: must have happened, not seen.
    case inferred
    /// Never reached in the trace, not even by inference.
    case missing

    public var word: String {
        switch self {
        case .observed(let source): return "observed (\(source.rawValue))"
        case .inferred: return "inferred"
        case .missing: return "missing"
        }
    }

    public var isObserved: Bool {
        if case .observed = self { return true }
        return false
    }
}

/// One track's result: each expected state with its status, and what the trace had instead.
public struct TrackVerdict: Sendable {
    public var track: ScenarioTrack
    public var statuses: [StateStatus]
    /// The states the trace reached, in order (inferred ones in parentheses).
    public var seen: [String]
    /// Observed transitions RFC 9293 forbids: a source claiming something that cannot be. (A
    /// different but legal path is a mismatch, shown in `seen`, not a false claim.)
    public var falseClaims: [String]
    public var matched: Bool
}

/// The verdict of one run: per track, key states, and overall.
public struct ScenarioVerdict: Sendable {
    public var tracks: [TrackVerdict]
    public var keyStates: [KeyState]
    /// Key states that were only inferred or missing.
    public var unobservedKeys: [KeyState]
    /// Why the scenario stopped early, if it did.
    public var failure: String?
    /// The segments the scenario must show; nil when nothing was captured (`--wire off`).
    public var wireChecks: [WireCheck]?

    public var sequencesMatched: Bool { tracks.allSatisfy(\.matched) }
    public var falseClaims: [String] { tracks.flatMap(\.falseClaims) }
    /// Matched: every sequence as expected, every key state observed, nothing false, no failure.
    /// With a capture, every required segment too.
    public var ok: Bool {
        failure == nil && sequencesMatched && unobservedKeys.isEmpty && falseClaims.isEmpty
            && (wireChecks ?? []).allSatisfy(\.passed)
    }

    /// Judges `events` against `scenario`'s tracks and key states.
    public static func judge(_ scenario: any LabScenario, events: [TraceEvent], slowMotion: Bool,
                             failure: String?, wireChecks: [WireCheck]? = nil) -> ScenarioVerdict {
        let keys = scenario.keyStates(slowMotion: slowMotion)
        var tracks: [TrackVerdict] = []
        var unobserved: [KeyState] = []
        for track in scenario.tracks {
            let mine = events.filter { $0.kind == .state && $0.side == track.side && $0.conn == track.conn && $0.to != nil }
            let statuses = track.states.map { state -> StateStatus in
                guard let event = mine.first(where: { $0.to == state }) else { return .missing }
                return event.source == .inferred || event.source == nil ? .inferred : .observed(event.source!)
            }
            let claims = mine.compactMap { event -> String? in
                guard event.source != .inferred, let to = event.to else { return nil }
                if event.unexpected { return "\(track.name): \(event.from?.name ?? "—") → \(to.name) (\(event.source?.rawValue ?? "?")) is not allowed by RFC 9293" }
                return nil
            }
            let seen = mine.map { $0.source == .inferred ? "(\($0.to!.name))" : $0.to!.name }
            let matched = mine.compactMap(\.to) == track.states && !mine.contains { $0.unexpected }
            tracks.append(TrackVerdict(track: track, statuses: statuses, seen: seen, falseClaims: claims, matched: matched))
            for key in keys where key.side == track.side && key.conn == track.conn {
                if let index = track.states.firstIndex(of: key.state), statuses[index].isObserved { continue }
                unobserved.append(key)
            }
        }
        return ScenarioVerdict(tracks: tracks, keyStates: keys, unobservedKeys: unobserved, failure: failure, wireChecks: wireChecks)
    }
}
