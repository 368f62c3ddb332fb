import SocketKit
import TCPTrace

/// Counts each sender's segments by kind, so a selector's `#N` names one segment, and tracks
/// where each direction's FIN ends, so the ACK of the peer's FIN (`last-ack`) is recognised.
struct SegmentClassifier {
    private var counts: [TraceSide: [SegmentKind: Int]] = [:]
    /// The sequence number just past each sender's FIN (the ack that acknowledges it).
    private var finEnd: [TraceSide: UInt32] = [:]

    /// The kinds of one segment (a FIN with data is both DATA and FIN).
    func kinds(of segment: DecodedTCPSegment, sender: TraceSide) -> [SegmentKind] {
        let flags = segment.flags
        var kinds: [SegmentKind] = []
        if flags.contains(.rst) { kinds.append(.rst) }
        if flags.contains(.syn) { kinds.append(flags.contains(.ack) ? .synAck : .syn) }
        if segment.payloadLength > 0 && !flags.contains(.syn) { kinds.append(.data) }
        if flags.contains(.fin) { kinds.append(.fin) }
        if kinds.isEmpty && flags.contains(.ack) {
            kinds.append(.ack)
            let peer: TraceSide = sender == .client ? .server : .client
            if let end = finEnd[peer], segment.ack == end { kinds.append(.lastAck) }
        }
        return kinds
    }

    /// Counts the segment and returns, for each of its kinds, which occurrence it is.
    mutating func count(_ segment: DecodedTCPSegment, sender: TraceSide) -> [SegmentKind: Int] {
        if segment.flags.contains(.fin) {
            finEnd[sender] = segment.seq &+ UInt32(truncatingIfNeeded: segment.payloadLength) &+ 1
        }
        var occurrences: [SegmentKind: Int] = [:]
        for kind in kinds(of: segment, sender: sender) {
            let n = (counts[sender]?[kind] ?? 0) + 1
            counts[sender, default: [:]][kind] = n
            occurrences[kind] = n
        }
        return occurrences
    }
}
