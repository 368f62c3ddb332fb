import SocketKit
import TCPTrace

/// One segment-level check of a scenario: what the wire must show, and whether it did.
public struct WireCheck: Sendable, Equatable {
    public var description: String
    public var passed: Bool
    /// The segments that showed it, or what was seen instead.
    public var evidence: String
}

/// The segments each scenario must show, checked on the capture as part of "matched": the
/// handshake's arithmetic (a SYN consumes one sequence number, and so does a FIN), and what
/// makes each scenario what it is.
public enum SegmentExpectations {
    public static func check(_ scenario: String, segments: [WireSegment]) -> [WireCheck] {
        var checks: [WireCheck] = []
        switch scenario {
        case "refused":
            checks.append(refusedReset(segments))
        case "backlog-full":
            checks.append(synBackoff(segments))
            checks += handshakes(segments)
        case "simultaneous-open":
            checks.append(crossingSYNs(segments))
        case "close-wait-leak":
            checks += handshakes(segments)
            checks.append(finAckedNoReplyFIN(segments))
        case "reset":
            checks += handshakes(segments)
            checks.append(present(segments, "an RST ends the connection without FINs") { $0.flags.contains(.rst) })
        case "simultaneous-close":
            checks += handshakes(segments)
            checks.append(crossingFINs(segments))
            checks += finsAcked(segments)
        default:
            checks += handshakes(segments)
            checks += finsAcked(segments)
        }
        return checks
    }

    /// Every completed handshake: SYN+ACK's ack = client ISN + 1, then ACK's ack = server ISN + 1.
    static func handshakes(_ segments: [WireSegment]) -> [WireCheck] {
        var checks: [WireCheck] = []
        for syn in firstSYNs(segments) {
            guard let synAck = segments.first(where: { isReply($0, to: syn) && $0.flags.contains([.syn, .ack]) }) else {
                checks.append(WireCheck(description: "handshake from \(syn.source): SYN+ACK ack = ISN + 1", passed: false,
                                        evidence: "no SYN+ACK to #\(syn.id)"))
                continue
            }
            let third = segments.first { sameDirection($0, syn) && $0.id > synAck.id && $0.flags == .ack && $0.fault != .dropped }
            // The SYN+ACK answers the last copy before it; earlier copies (same ISN) were dropped,
            // as in backlog-full, and are named as such rather than as the handshake's SYN.
            let copies = segments.filter { sameDirection($0, syn) && $0.flags == .syn && $0.seq == syn.seq && $0.id < synAck.id }
            let answered = copies.last ?? syn
            let dropped = copies.dropLast().map { "#\($0.id)" }
            let ok = synAck.ack == answered.seq &+ 1 && (third.map { $0.ack == synAck.seq &+ 1 } ?? false)
            checks.append(WireCheck(
                description: "handshake from \(syn.source): SYN+ACK ack = client ISN + 1, ACK ack = server ISN + 1", passed: ok,
                evidence: "#\(answered.id) SYN seq=\(answered.seq)"
                    + (dropped.isEmpty ? "" : " (earlier copies \(dropped.joined(separator: ", ")) unanswered)")
                    + ", #\(synAck.id) SYN+ACK seq=\(synAck.seq) ack=\(synAck.ack)"
                    + (third.map { ", #\($0.id) ACK ack=\($0.ack)" } ?? ", no third ACK")))
        }
        return checks
    }

    /// Every FIN is acknowledged with ack = its seq + len + 1.
    static func finsAcked(_ segments: [WireSegment]) -> [WireCheck] {
        segments.filter { $0.flags.contains(.fin) }.map { fin in
            let wanted = fin.seq &+ fin.sequenceLength
            let ack = segments.first { isReply($0, to: fin) && $0.id > fin.id && $0.flags.contains(.ack) && $0.ack == wanted && $0.fault != .dropped }
            return WireCheck(description: "FIN #\(fin.id) from \(fin.source) acknowledged (ack = FIN seq + 1)", passed: ack != nil,
                             evidence: ack.map { "#\($0.id) \($0.label())" } ?? "no ACK of seq \(wanted)")
        }
    }

    static func refusedReset(_ segments: [WireSegment]) -> WireCheck {
        let syn = firstSYNs(segments).first
        let reset = syn.flatMap { syn in segments.first { isReply($0, to: syn) && $0.flags.contains([.rst, .ack]) } }
        var ok = false
        if let syn, let reset { ok = reset.ack == syn.seq &+ 1 }
        return WireCheck(description: "RST+ACK in reply to the SYN (ack = ISN + 1)", passed: ok,
                         evidence: reset.map { "#\($0.id) \($0.label())" } ?? (syn == nil ? "no SYN captured" : "no RST+ACK"))
    }

    /// The waiting client's SYN is sent again with the same ISN, on the kernel's schedule: the
    /// first `net.ipv4.tcp_syn_linear_timeouts` retransmissions (Linux ≥ 6.10, default 4) come
    /// at a constant 1 s, later ones with the timeout doubling (older kernels: doubling at once).
    static func synBackoff(_ segments: [WireSegment]) -> WireCheck {
        let groups = Dictionary(grouping: segments.filter { $0.flags == .syn }) { "\($0.source)|\($0.seq)" }
        guard let copies = groups.values.max(by: { $0.count < $1.count }), copies.count >= 3 else {
            return WireCheck(description: "SYN retransmitted (same ISN) on the kernel's backoff schedule", passed: false,
                             evidence: "no SYN sent three times")
        }
        let linear = linearSYNTimeouts()
        let gaps = zip(copies, copies.dropFirst()).map { Double($1.timestampNs - $0.timestampNs) / 1e9 }
        var ok = true
        for (index, pair) in zip(gaps, gaps.dropFirst()).enumerated() {
            let ratio = pair.1 / pair.0
            // Retransmission index+2 follows a linear or a doubled timeout.
            ok = ok && (index + 2 <= linear ? (0.6...1.6).contains(ratio) : (1.5...2.6).contains(ratio))
        }
        let schedule = linear > 0 ? "first \(linear) retransmissions 1 s apart (tcp_syn_linear_timeouts), then doubling" : "gaps doubling"
        return WireCheck(description: "SYN retransmitted (same ISN) on the kernel's backoff schedule: \(schedule)", passed: ok,
                         evidence: "\(copies.count) SYNs seq=\(copies[0].seq), gaps " + gaps.map { format3($0) + " s" }.joined(separator: ", "))
    }

    /// net.ipv4.tcp_syn_linear_timeouts, 0 where the kernel predates it.
    static func linearSYNTimeouts() -> Int {
        guard let text = try? TextFile.read("/proc/sys/net/ipv4/tcp_syn_linear_timeouts") else { return 0 }
        return Int(text.trimmedWhitespace) ?? 0
    }

    static func crossingSYNs(_ segments: [WireSegment]) -> WireCheck {
        let syns = segments.filter { $0.flags == .syn }
        let crossing = syns.first { a in
            syns.contains { b in
                isReply(b, to: a) && !segments.contains { $0.flags.contains([.syn, .ack]) && $0.id < max(a.id, b.id) }
            }
        }
        return WireCheck(description: "two SYNs cross (each sent before any SYN+ACK)", passed: crossing != nil,
                         evidence: syns.map { "#\($0.id) \($0.source)→\($0.destination.port) SYN" }.joined(separator: ", "))
    }

    /// Each side's FIN leaves before the other's FIN has been acknowledged by it.
    static func crossingFINs(_ segments: [WireSegment]) -> WireCheck {
        let fins = segments.filter { $0.flags.contains(.fin) }
        let crossing = fins.first { a in
            fins.contains { b in isReply(b, to: a) && Int32(bitPattern: b.ack &- (a.seq &+ a.sequenceLength)) < 0 }
        }
        return WireCheck(description: "FINs cross: one side's FIN does not yet acknowledge the other's", passed: crossing != nil,
                         evidence: fins.map { "#\($0.id) \($0.label())" }.joined(separator: ", "))
    }

    static func finAckedNoReplyFIN(_ segments: [WireSegment]) -> WireCheck {
        guard let fin = segments.first(where: { $0.flags.contains(.fin) }) else {
            return WireCheck(description: "the client's FIN is ACKed and no FIN comes back", passed: false, evidence: "no FIN captured")
        }
        let acked = segments.contains { isReply($0, to: fin) && $0.flags.contains(.ack) && $0.ack == fin.seq &+ fin.sequenceLength }
        let replyFIN = segments.first { isReply($0, to: fin) && $0.flags.contains(.fin) }
        return WireCheck(description: "the client's FIN is ACKed and no FIN comes back (CLOSE_WAIT leak)",
                         passed: acked && replyFIN == nil && fin.sender == .client,
                         evidence: "#\(fin.id) \(fin.label()) from \(fin.sender?.rawValue ?? "?")" + (replyFIN.map { "; but #\($0.id) FIN back" } ?? ""))
    }

    static func present(_ segments: [WireSegment], _ text: String, _ test: (WireSegment) -> Bool) -> WireCheck {
        let found = segments.first(where: test)
        return WireCheck(description: text, passed: found != nil, evidence: found.map { "#\($0.id) \($0.label())" } ?? "none")
    }

    /// The first pure SYN of each connection attempt (retransmissions share its seq).
    static func firstSYNs(_ segments: [WireSegment]) -> [WireSegment] {
        var seen: Set<String> = []
        return segments.filter { segment in
            guard segment.flags == .syn else { return false }
            return seen.insert("\(segment.source)|\(segment.destination)|\(segment.seq)").inserted
        }
    }

    static func isReply(_ segment: WireSegment, to other: WireSegment) -> Bool {
        segment.source == other.destination && segment.destination == other.source
    }

    static func sameDirection(_ a: WireSegment, _ b: WireSegment) -> Bool {
        a.source == b.source && a.destination == b.destination
    }

    static func format3(_ value: Double) -> String {
        let millis = Int((value * 1000).rounded())
        let fraction = String(millis % 1000)
        return "\(millis / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}
