/// The TCP options the trace shows (RFC 9293 MSS, RFC 2018 SACK, RFC 7323 window scale and
/// timestamps). Unknown kinds are listed by number; a malformed list stops parsing and says so.
public struct TCPOptions: Sendable, Equatable {
    public struct Timestamp: Sendable, Equatable {
        public var value: UInt32
        public var echoReply: UInt32
        public init(value: UInt32, echoReply: UInt32) { self.value = value; self.echoReply = echoReply }
    }

    public struct SACKBlock: Sendable, Equatable {
        public var left: UInt32
        public var right: UInt32
        public init(left: UInt32, right: UInt32) { self.left = left; self.right = right }
    }

    public var mss: UInt16?
    public var sackPermitted = false
    public var windowScale: UInt8?
    public var timestamp: Timestamp?
    public var sackBlocks: [SACKBlock] = []
    /// Kinds present that are none of the above (e.g. 30 MPTCP, 34 TFO), in order.
    public var otherKinds: [UInt8] = []
    /// Set when an option's length ran past the header or was impossible: parsing stopped there.
    public var malformed = false

    public init() {}

    public var isEmpty: Bool {
        mss == nil && !sackPermitted && windowScale == nil && timestamp == nil && sackBlocks.isEmpty
            && otherKinds.isEmpty && !malformed
    }

    /// Parses the option bytes between the fixed 20-byte header and the data offset.
    /// Never traps: every length is checked against what is left.
    public static func parse(_ bytes: ArraySlice<UInt8>) -> TCPOptions {
        var options = TCPOptions()
        var index = bytes.startIndex
        func be16(_ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        func be32(_ at: Int) -> UInt32 { UInt32(be16(at)) << 16 | UInt32(be16(at + 2)) }
        while index < bytes.endIndex {
            let kind = bytes[index]
            if kind == 0 { break }                       // end of option list
            if kind == 1 { index += 1; continue }        // no-operation (padding)
            guard index + 1 < bytes.endIndex else { options.malformed = true; break }
            let length = Int(bytes[index + 1])
            guard length >= 2, index + length <= bytes.endIndex else { options.malformed = true; break }
            let body = index + 2
            switch (kind, length) {
            case (2, 4): options.mss = be16(body)
            case (3, 3): options.windowScale = bytes[body]
            case (4, 2): options.sackPermitted = true
            case (5, _) where (length - 2) % 8 == 0:
                var block = body
                while block + 8 <= index + length {
                    options.sackBlocks.append(SACKBlock(left: be32(block), right: be32(block + 4)))
                    block += 8
                }
            case (8, 10): options.timestamp = Timestamp(value: be32(body), echoReply: be32(body + 4))
            case (2, _), (3, _), (4, _), (5, _), (8, _):
                options.malformed = true                 // a known kind with the wrong length
                return options
            default: options.otherKinds.append(kind)
            }
            index += length
        }
        return options
    }

    /// tcpdump's notation: `mss 65495,sackOK,TS val 1 ecr 0,wscale 7`, SACK blocks absolute.
    public var summary: String { summary(sackBase: nil) }

    /// The same, SACK blocks minus `sackBase` (the receiver's ISN, as for a relative `ack`).
    public func summary(sackBase: UInt32?) -> String {
        var parts: [String] = []
        if let mss { parts.append("mss \(mss)") }
        if sackPermitted { parts.append("sackOK") }
        if let timestamp { parts.append("TS val \(timestamp.value) ecr \(timestamp.echoReply)") }
        if let windowScale { parts.append("wscale \(windowScale)") }
        if !sackBlocks.isEmpty { parts.append("sack " + sackBlocks.map { "{\($0.left &- (sackBase ?? 0)):\($0.right &- (sackBase ?? 0))}" }.joined()) }
        parts += otherKinds.map { "opt-\($0)" }
        if malformed { parts.append("malformed") }
        return parts.joined(separator: ",")
    }
}
