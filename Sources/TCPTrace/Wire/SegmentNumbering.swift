/// Numbers decoded segments: a trace-wide id, sequence numbers relative to each direction's ISN
/// (Wireshark's default), and the window scaled once both SYNs have been seen (RFC 7323 §2.2:
/// scaling is in effect only when both SYNs carry the option; a SYN's own window is never scaled).
public struct SegmentNumbering: Sendable {
    struct Direction: Sendable {
        /// The ISN from this direction's SYN, or the first seq seen when the SYN was missed.
        var isn: UInt32
        var sawSYN: Bool
        var windowScale: UInt8?
    }

    struct Conversation: Sendable {
        var directions: [WireEndpoint: Direction] = [:]
        var lastSeenNs: UInt64 = 0
    }

    /// Unordered endpoint pair: both directions of a connection share one conversation.
    struct ConversationKey: Hashable, Sendable {
        let low: WireEndpoint
        let high: WireEndpoint
        init(_ a: WireEndpoint, _ b: WireEndpoint) {
            let aFirst = a.address.lexicographicallyPrecedes(b.address) || (a.address == b.address && a.port <= b.port)
            (low, high) = aFirst ? (a, b) : (b, a)
        }
    }

    private var conversations: [ConversationKey: Conversation] = [:]
    private(set) var nextID = 1
    /// Conversations kept before the least recently seen half is forgotten (bounded memory for
    /// long runs; a forgotten one restarts its relative numbers from the next seq seen).
    let capacity: Int

    public init(capacity: Int = 4096) { self.capacity = max(2, capacity) }

    public mutating func number(_ decoded: DecodedTCPSegment, timestampNs: UInt64, wallNs: Int64) -> WireSegment {
        let key = ConversationKey(decoded.source, decoded.destination)
        var conversation = conversations[key] ?? Conversation()
        let isPureSYN = decoded.flags.contains(.syn) && !decoded.flags.contains(.ack)
        // A new SYN with a different ISN on a known pair is a new connection reusing the 4-tuple
        // (a retransmitted SYN carries the same ISN and keeps the numbering).
        if isPureSYN, let known = conversation.directions[decoded.source], known.isn != decoded.seq || !known.sawSYN {
            conversation.directions = [:]
        }
        var sender = conversation.directions[decoded.source]
            ?? Direction(isn: decoded.seq, sawSYN: false, windowScale: nil)
        if decoded.flags.contains(.syn) && !sender.sawSYN {
            sender = Direction(isn: decoded.seq, sawSYN: true, windowScale: decoded.options.windowScale)
        }
        conversation.directions[decoded.source] = sender
        conversation.lastSeenNs = timestampNs
        let receiver = conversation.directions[decoded.destination]

        var relativeAck: UInt32?
        if decoded.flags.contains(.ack), let receiver { relativeAck = decoded.ack &- receiver.isn }
        let scaled: UInt32?
        if decoded.flags.contains(.syn) {
            scaled = UInt32(decoded.window)
        } else if sender.sawSYN, let receiver, receiver.sawSYN {
            let shift = (sender.windowScale != nil && receiver.windowScale != nil) ? min(sender.windowScale ?? 0, 14) : 0
            scaled = UInt32(decoded.window) << UInt32(shift)     // RFC 7323: shifts above 14 are treated as 14
        } else {
            scaled = nil
        }
        conversations[key] = conversation
        if conversations.count > capacity { forgetOldest() }

        defer { nextID += 1 }
        return WireSegment(
            id: nextID, timestampNs: timestampNs, wallNs: wallNs, source: decoded.source,
            destination: decoded.destination, flags: decoded.flags, seq: decoded.seq, ack: decoded.ack,
            relativeSeq: decoded.seq &- sender.isn, relativeAck: relativeAck, ackBase: receiver?.isn, length: decoded.payloadLength,
            rawWindow: decoded.window, scaledWindow: scaled, options: decoded.options)
    }

    private mutating func forgetOldest() {
        let ordered = conversations.sorted { $0.value.lastSeenNs < $1.value.lastSeenNs }
        for (key, _) in ordered.prefix(conversations.count / 2) { conversations[key] = nil }
    }
}
