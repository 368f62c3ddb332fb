import SocketKit

extension SegmentAttribution {
    /// A SYN the listener dropped: the peer sent the same SYN again (same seq) before any
    /// SYN+ACK answered it, so it moved nothing. With a full accept queue Linux drops SYNs
    /// silently; the one that created the connection is the last copy before the SYN+ACK whose
    /// ack is its seq + 1.
    static func unanswered(_ syn: WireSegment, received: [WireSegment], sent: [WireSegment]) -> Bool {
        guard syn.flags.contains(.syn), !syn.flags.contains(.ack) else { return false }
        let answer = reply(to: syn, sent: sent)
        return received.contains { copy in
            copy.id != syn.id && copy.flags.contains(.syn) && !copy.flags.contains(.ack) && copy.seq == syn.seq
                && (copy.timestampNs, copy.id) > (syn.timestampNs, syn.id)
                && copy.timestampNs <= (answer?.timestampNs ?? .max)
        }
    }

    /// Our segment that acknowledged `segment` first: the SYN+ACK or ACK whose ack covers it.
    static func reply(to segment: WireSegment, sent: [WireSegment]) -> WireSegment? {
        let end = segment.seq &+ segment.sequenceLength
        return sent.first {
            $0.timestampNs >= segment.timestampNs && $0.flags.contains(.ack) && $0.ack == end
                && (!segment.flags.contains(.syn) || $0.flags.contains(.syn) || segment.flags.contains(.ack))
        }
    }

    /// What receiving `segment` did, for the cause of the inferred state it explains:
    /// `SYN received, answered with SYN+ACK #7`.
    static func effect(of segment: WireSegment, from: TCPState, to: TCPState, sent: [WireSegment]) -> String {
        let flags = segment.flags
        var text: String
        if flags.contains(.rst) {
            text = "\(flags) received"
        } else if flags.contains(.syn) {
            text = "\(flags) received"
        } else if flags.contains(.fin) {
            text = (from == .finWait1 && to == .timeWait) || (from == .finWait1 && to == .finWait2)
                ? "\(flags) received (ACKs our FIN, carries the peer's)" : "the peer's FIN received"
        } else {
            switch (from, to) {
            case (.synReceived, .established), (.listen, .established): text = "ACK of our SYN+ACK received"
            case (.finWait1, .finWait2), (.closing, .timeWait), (.lastAck, .closed): text = "ACK of our FIN received"
            default: text = "\(flags) received"
            }
        }
        if flags.contains(.syn) || flags.contains(.fin), let answer = reply(to: segment, sent: sent) {
            text += ", answered with \(answer.flags) #\(answer.id)"
        }
        return text
    }
}
