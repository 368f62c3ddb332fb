/// One TCP segment seen on the wire, decoded: the unit the `segment` event, the ladder's arrows,
/// the pictures and the pcapng comments are built from.
///
/// Sequence numbers are kept twice: absolute (as on the wire) and relative to each direction's
/// initial sequence number, as Wireshark shows them by default (the SYN has relative seq 0, the
/// first data byte 1, because a SYN consumes one sequence number, and so does a FIN).
public struct WireSegment: Sendable, Equatable {
    /// 1-based, in capture order within one trace; a state event's `segment` field names it.
    public var id: Int
    /// CLOCK_MONOTONIC ns: the kernel's receive timestamp converted to the trace's clock.
    public var timestampNs: UInt64
    /// CLOCK_REALTIME ns of the same instant (pcapng timestamps are epoch based).
    public var wallNs: Int64
    public var source: WireEndpoint
    public var destination: WireEndpoint
    /// The trace side that sent it, once the segment is matched to a traced connection.
    public var sender: TraceSide?
    public var flags: TCPFlags
    /// Absolute sequence and acknowledgment numbers, as on the wire.
    public var seq: UInt32
    public var ack: UInt32
    /// `seq` minus the sender's ISN (first seq seen when its SYN was not captured).
    public var relativeSeq: UInt32
    /// `ack` minus the receiver's ISN; nil without the ACK flag or before that ISN is known.
    public var relativeAck: UInt32?
    /// The receiver's ISN, once known: what `relativeAck` and the SACK blocks (which name the
    /// receiver's sequence space, like `ack`) are relative to.
    public var ackBase: UInt32?
    /// TCP payload bytes.
    public var length: Int
    /// The window field as sent (16 bits, never scaled on a SYN).
    public var rawWindow: UInt16
    /// The window in bytes: `rawWindow << scale` once both SYNs carried wscale (RFC 7323), else nil.
    public var scaledWindow: UInt32?
    public var options: TCPOptions
    /// What the fault layer did to it (nil: passed untouched, or no fault layer).
    public var fault: SegmentFault?

    public init(
        id: Int, timestampNs: UInt64, wallNs: Int64, source: WireEndpoint, destination: WireEndpoint,
        sender: TraceSide? = nil, flags: TCPFlags, seq: UInt32, ack: UInt32, relativeSeq: UInt32,
        relativeAck: UInt32?, ackBase: UInt32? = nil, length: Int, rawWindow: UInt16, scaledWindow: UInt32?,
        options: TCPOptions
    ) {
        self.id = id
        self.timestampNs = timestampNs
        self.wallNs = wallNs
        self.source = source
        self.destination = destination
        self.sender = sender
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.relativeSeq = relativeSeq
        self.relativeAck = relativeAck
        self.ackBase = ackBase
        self.length = length
        self.rawWindow = rawWindow
        self.scaledWindow = scaledWindow
        self.options = options
    }

    /// How `side` saw this segment: it sent it, or received it. Nil while the sender is unknown.
    public func direction(for side: TraceSide) -> String? {
        sender.map { $0 == side ? "sent" : "received" }
    }

    /// The window to show: scaled when known, else the raw field.
    public var window: UInt32 { scaledWindow ?? UInt32(rawWindow) }

    /// Sequence space this segment occupies: its payload, plus one for a SYN and one for a FIN.
    public var sequenceLength: UInt32 {
        UInt32(truncatingIfNeeded: length) + (flags.contains(.syn) ? 1 : 0) + (flags.contains(.fin) ? 1 : 0)
    }

    /// The options in tcpdump's notation, SACK blocks relative to the receiver's ISN (as `ack`)
    /// unless `absolute` or that ISN is unknown.
    public func optionsSummary(absolute: Bool = false) -> String {
        options.summary(sackBase: absolute ? nil : ackBase)
    }

    /// The classic diagram's arrow label: `SYN+ACK seq=0 ack=1 win=65483 len=0`, relative numbers
    /// unless `absolute`.
    public func label(absolute: Bool = false) -> String {
        var text = "\(flags) seq=\(absolute ? seq : relativeSeq)"
        if flags.contains(.ack) {
            if absolute { text += " ack=\(ack)" } else if let relative = relativeAck { text += " ack=\(relative)" }
        }
        text += " win=\(window)"
        if length > 0 || !flags.contains(.syn) { text += " len=\(length)" }
        return text
    }
}

/// An IP address and TCP port as seen in a packet.
public struct WireEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6), network order.
    public var address: [UInt8]
    public var port: UInt16

    public init(address: [UInt8], port: UInt16) {
        self.address = address
        self.port = port
    }

    public var isIPv6: Bool { address.count == 16 }

    /// Parses the trace's notation back: `127.0.0.1:7007` or `[::1]:7007` (for `--merge`).
    public init?(text: String) {
        if text.hasPrefix("["), let close = text.lastIndex(of: "]") {
            let host = String(text[text.index(after: text.startIndex)..<close])
            guard let port = UInt16(text[text.index(after: close)...].dropFirst()), let bytes = Self.parseIPv6(host) else { return nil }
            self.init(address: bytes, port: port)
            return
        }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { return nil }
        let octets = parts[0].split(separator: ".").compactMap { UInt8($0) }
        guard octets.count == 4 else { return nil }
        self.init(address: octets, port: port)
    }

    /// inet_pton(AF_INET6) without Glibc: hex groups with at most one `::`, an IPv4 tail allowed.
    static func parseIPv6(_ text: String) -> [UInt8]? {
        func groups(_ part: Substring) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            for piece in part.split(separator: ":", omittingEmptySubsequences: false) {
                if piece.contains(".") {
                    let octets = piece.split(separator: ".").compactMap { UInt8($0) }
                    guard octets.count == 4 else { return nil }
                    result += [UInt16(octets[0]) << 8 | UInt16(octets[1]), UInt16(octets[2]) << 8 | UInt16(octets[3])]
                } else {
                    guard piece.count <= 4, let value = UInt16(piece, radix: 16) else { return nil }
                    result.append(value)
                }
            }
            return result
        }
        let gap = text.firstRange(of: "::")
        let halves: [Substring] = gap.map { [text[..<$0.lowerBound], text[$0.upperBound...]] } ?? [text[...]]
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard !halves[1].contains("::"), let tail = groups(halves[1]), head.count + tail.count < 8 else { return nil }
            all = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// `127.0.0.1:7007` or `[::1]:7007`, the trace's address notation.
    public var description: String {
        isIPv6 ? "[\(WireEndpoint.ipv6Text(address))]:\(port)" : "\(address.map(String.init).joined(separator: ".")):\(port)"
    }

    /// RFC 5952 text: lower-case hex, longest run (≥2) of zero groups as `::`.
    static func ipv6Text(_ bytes: [UInt8]) -> String {
        guard bytes.count == 16 else { return "?" }
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        var bestStart = -1, bestLength = 0, index = 0
        while index < 8 {
            guard groups[index] == 0 else { index += 1; continue }
            let start = index
            while index < 8 && groups[index] == 0 { index += 1 }
            if index - start > bestLength && index - start >= 2 { bestStart = start; bestLength = index - start }
        }
        func hex(_ range: Range<Int>) -> String { range.map { String(groups[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        if bestStart == 0 && bestLength == 5 && groups[5] == 0xffff {
            return "::ffff:" + bytes[12...].map(String.init).joined(separator: ".")
        }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

/// TCP header flags (RFC 9293 §3.1 control bits, with ECE/CWR from RFC 3168).
public struct TCPFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
    public static let ece = TCPFlags(rawValue: 0x40)
    public static let cwr = TCPFlags(rawValue: 0x80)

    /// Parses `SYN+ACK`-style text back (`none` is empty).
    public init?(text: String) {
        let table: [String: TCPFlags] = ["SYN": .syn, "FIN": .fin, "RST": .rst, "PSH": .psh, "ACK": .ack,
                                         "URG": .urg, "ECE": .ece, "CWR": .cwr]
        var flags = TCPFlags()
        if text != "none" {
            for name in text.split(separator: "+") {
                guard let flag = table[String(name)] else { return nil }
                flags.insert(flag)
            }
        }
        self = flags
    }

    /// Textbook order, joined by `+`: `SYN+ACK`, `FIN+ACK`, `RST+ACK`, `PSH+ACK`; `none` for 0.
    public var description: String {
        let names: [(TCPFlags, String)] = [
            (.syn, "SYN"), (.fin, "FIN"), (.rst, "RST"), (.psh, "PSH"), (.ack, "ACK"),
            (.urg, "URG"), (.ece, "ECE"), (.cwr, "CWR"),
        ]
        let present = names.filter { contains($0.0) }.map(\.1)
        return present.isEmpty ? "none" : present.joined(separator: "+")
    }
}
