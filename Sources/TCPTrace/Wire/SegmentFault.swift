/// What the fault layer (the relay between two network namespaces, `--drop/--delay/--duplicate`
/// and the fault scenarios) did to a segment. A segment without one passed untouched.
public enum SegmentFault: Sendable, Equatable {
    /// Taken off the wire: the receiver never saw it.
    case dropped
    /// Held, then released `ns` later; the segment's time is its release.
    case delayed(ns: UInt64)
    /// A second copy of the segment before it, sent right after it.
    case duplicated
    /// Written by the lab, not by either kernel; `why` says what it stands for.
    case injected(why: String)

    /// The JSON `fault` value.
    public var name: String {
        switch self {
        case .dropped: "dropped"
        case .delayed: "delayed"
        case .duplicated: "duplicated"
        case .injected: "injected"
        }
    }

    public var delayNs: UInt64? {
        if case .delayed(let ns) = self { return ns }
        return nil
    }

    /// The pcapng comment and the ladder's note: `fault: dropped by the relay`.
    public var note: String {
        switch self {
        case .dropped: "fault: dropped (never reached the receiver)"
        case .delayed(let ns): "fault: delayed \(TextTraceRenderer.duration(ns)) (held by the relay)"
        case .duplicated: "fault: duplicated (a second copy sent by the relay)"
        case .injected(let why): "fault: injected by the lab (\(why))"
        }
    }

    /// Parses the JSON back (`--merge`): the name, and the delay where there is one.
    public init?(name: String, delayNs: UInt64?, why: String? = nil) {
        switch name {
        case "dropped": self = .dropped
        case "delayed": self = .delayed(ns: delayNs ?? 0)
        case "duplicated": self = .duplicated
        case "injected": self = .injected(why: why ?? "")
        default: return nil
        }
    }
}
