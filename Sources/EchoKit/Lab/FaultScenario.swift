import SocketKit
import TCPTrace
import WireFaults

/// A scenario that needs the fault wire: its faults are part of it, and it judges its own
/// segments (what was lost, what was sent again, what answered).
public protocol FaultScenario: LabScenario {
    /// The faults the scenario sets up before it starts (more may be added while it runs).
    var faultRules: [FaultRule] { get }
    /// What the relay's record must show, given the run's segments and joined events.
    func wireChecks(_ segments: [WireSegment], events: [TraceEvent]) -> [WireCheck]
}

/// Segment checks the fault scenarios share.
enum FaultChecks {
    static func format(_ ns: UInt64) -> String { TextTraceRenderer.duration(ns) }

    static func describe(_ segment: WireSegment) -> String {
        "#\(segment.id) \(segment.sender?.rawValue ?? "?") \(segment.label())" + (segment.fault.map { " [\($0.name)]" } ?? "")
    }

    /// A segment with `fault` from `sender` passing `test` is on the record.
    static func faulted(_ segments: [WireSegment], _ fault: String, from sender: TraceSide, _ text: String,
                        _ test: (WireSegment) -> Bool = { _ in true }) -> (WireCheck, WireSegment?) {
        let found = segments.first { $0.fault?.name == fault && $0.sender == sender && test($0) }
        return (WireCheck(description: text, passed: found != nil, evidence: found.map(describe) ?? "no such segment"), found)
    }

    /// The same segment (same seq, flags) sent twice by `sender`, at least `minimumGapNs` apart:
    /// a retransmission after the RTO. Returns the check and both copies.
    static func retransmitted(_ segments: [WireSegment], from sender: TraceSide, _ what: String, minimumGapNs: UInt64,
                              _ test: (WireSegment) -> Bool) -> (WireCheck, first: WireSegment?, again: WireSegment?) {
        let mine = segments.filter { $0.sender == sender && $0.fault?.name != "injected" && test($0) }
        for (index, first) in mine.enumerated() {
            if let again = mine[(index + 1)...].first(where: { $0.seq == first.seq && $0.flags == first.flags }) {
                // Between the two sendings: a held copy left its sender its delay before it arrived.
                let gap = (again.timestampNs - (again.fault?.delayNs ?? 0)) - (first.timestampNs - (first.fault?.delayNs ?? 0))
                return (WireCheck(description: "the same \(what) sent again by the \(sender.rawValue) at least \(format(minimumGapNs)) later",
                                  passed: gap >= minimumGapNs,
                                  evidence: "\(describe(first)), then #\(again.id) \(format(gap)) later, same seq"), first, again)
            }
        }
        return (WireCheck(description: "the same \(what) sent again by the \(sender.rawValue) (retransmission)", passed: false,
                          evidence: mine.isEmpty ? "no \(what) captured" : "sent once only: " + mine.map(describe).joined(separator: ", ")), nil, nil)
    }

    /// A segment from `sender` after `after` (by id) that acknowledges `end` exactly.
    static func acknowledged(_ segments: [WireSegment], from sender: TraceSide, after: WireSegment?, end: UInt32?,
                             _ text: String) -> (WireCheck, WireSegment?) {
        guard let after, let end else { return (WireCheck(description: text, passed: false, evidence: "nothing to acknowledge"), nil) }
        let found = segments.first { $0.id > after.id && $0.sender == sender && $0.fault != .dropped && $0.flags.contains(.ack) && $0.ack == end }
        return (WireCheck(description: text, passed: found != nil, evidence: found.map(describe) ?? "no ACK of \(end) after #\(after.id)"), found)
    }

    /// A state event of `side` #`conn` reaching `to` at or after `segment`, as the trace has it.
    static func state(_ events: [TraceEvent], _ side: TraceSide, _ conn: Int, from: TCPState?, to: TCPState,
                      after segment: WireSegment?, _ text: String) -> WireCheck {
        guard let segment else { return WireCheck(description: text, passed: false, evidence: "the segment before it is missing") }
        let found = events.first {
            $0.kind == .state && $0.side == side && $0.conn == conn && $0.to == to && (from == nil || $0.from == from)
                && $0.timestampNs >= segment.timestampNs
        }
        return WireCheck(description: text, passed: found != nil,
                         evidence: found.map { "\($0.from?.name ?? "—") → \(to.name) (\($0.source?.rawValue ?? "?"))"
                             + ($0.segmentID.map { ", caused by #\($0)" } ?? "") + ", \(format($0.timestampNs - segment.timestampNs)) after #\(segment.id)" }
                             ?? "no \(to.name) after #\(segment.id)")
    }
}
