import SocketKit
import TCPTrace

/// What a selector picks: a kind of segment (`--drop server:FIN`).
public enum SegmentKind: String, Sendable, CaseIterable {
    case syn = "SYN"
    case synAck = "SYN+ACK"
    /// A bare ACK: no payload, no SYN, FIN or RST.
    case ack = "ACK"
    /// Any segment with payload.
    case data = "DATA"
    case fin = "FIN"
    case rst = "RST"
    /// The bare ACK that acknowledges the peer's FIN (the close's last segment).
    case lastAck = "last-ack"
}

/// `SENDER:WHAT[#N]`: that sender's N-th segment of that kind (retransmissions count: the
/// first FIN is `#1`, its retransmission `#2`).
public struct FaultSelector: Sendable, Equatable, CustomStringConvertible {
    public var sender: TraceSide
    public var kind: SegmentKind
    public var occurrence: Int

    public init(sender: TraceSide, kind: SegmentKind, occurrence: Int = 1) {
        self.sender = sender
        self.kind = kind
        self.occurrence = occurrence
    }

    /// The grammar, for the one-line usage error and --help.
    public static let grammar = "SEL is SENDER:WHAT[#N] with SENDER client|server, WHAT SYN|SYN+ACK|ACK|DATA|FIN|RST|last-ack, N ≥ 1 (that sender's N-th such segment, default 1), e.g. server:FIN, client:last-ack, client:DATA#2"

    public init?(text: String) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let sender = TraceSide(rawValue: String(parts[0])) else { return nil }
        let what = parts[1].split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)
        // Case-insensitive WHAT (`fin`, `syn+ack`), spelled as in the grammar when printed.
        guard let kind = SegmentKind.allCases.first(where: { $0.rawValue.lowercased() == what[0].lowercased() }) else { return nil }
        var occurrence = 1
        if what.count == 2 {
            guard let n = Int(what[1]), (1...1000).contains(n) else { return nil }
            occurrence = n
        }
        self.init(sender: sender, kind: kind, occurrence: occurrence)
    }

    public var description: String { "\(sender.rawValue):\(kind.rawValue)" + (occurrence == 1 ? "" : "#\(occurrence)") }
}

/// What the relay does to the selected segment.
public enum FaultAction: Sendable, Equatable {
    case drop
    /// Hold for `ns`, then release.
    case delay(ns: UInt64)
    /// Send it, then a second copy.
    case duplicate
    /// Hold until the lab calls `FaultRelay.releaseHeld()` (the old duplicate SYN).
    case hold
}

/// One `--drop/--delay/--duplicate`: a selector and what to do.
public struct FaultRule: Sendable, Equatable, CustomStringConvertible {
    public var selector: FaultSelector
    public var action: FaultAction

    public init(_ selector: FaultSelector, _ action: FaultAction) {
        self.selector = selector
        self.action = action
    }

    public var description: String {
        switch action {
        case .drop: "--drop \(selector)"
        case .delay(let ns): "--delay \(selector)=\(TextTraceRenderer.duration(ns))"
        case .duplicate: "--duplicate \(selector)"
        case .hold: "hold \(selector) until the lab releases it"
        }
    }

    /// Parses one option's value. `nil` for a value that does not follow the grammar.
    /// `--delay` takes `SEL=DURATION`: `300ms`, `1.5s`, `250us`.
    public static func parse(option: String, value: String) -> FaultRule? {
        switch option {
        case "--drop": return FaultSelector(text: value).map { FaultRule($0, .drop) }
        case "--duplicate": return FaultSelector(text: value).map { FaultRule($0, .duplicate) }
        case "--delay":
            guard let equals = value.lastIndex(of: "="), let selector = FaultSelector(text: String(value[..<equals])),
                  let ns = duration(String(value[value.index(after: equals)...])) else { return nil }
            return FaultRule(selector, .delay(ns: ns))
        default: return nil
        }
    }

    /// `300ms`, `1.5s`, `250us` → ns; at most 60 s (a hold longer than TCP's patience tells nothing).
    static func duration(_ text: String) -> UInt64? {
        let units: [(String, Double)] = [("ms", 1e6), ("us", 1e3), ("µs", 1e3), ("s", 1e9)]
        guard let (suffix, scale) = units.first(where: { text.hasSuffix($0.0) }),
              let value = Double(text.dropLast(suffix.count)), value > 0, value * scale <= 60e9 else { return nil }
        return UInt64(value * scale)
    }
}
