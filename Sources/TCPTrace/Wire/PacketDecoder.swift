/// What a captured frame starts with: an Ethernet header (AF_PACKET SOCK_RAW, including `lo`,
/// whose frames carry zero MACs), or the IP header directly (SOCK_DGRAM, pcapng LINKTYPE_RAW).
public enum WireLinkType: Sendable, Equatable {
    case ethernet
    case rawIP

    /// The pcapng/pcap LINKTYPE_ number.
    public var pcapLinkType: UInt16 { self == .ethernet ? 1 : 101 }
}

/// Why a frame was not decoded into a TCP segment. Never a crash: every read is bounds-checked.
public enum WireDecodeError: Error, Equatable, Sendable {
    /// The frame ended inside the named header.
    case truncated(String)
    case notIP(etherType: UInt16)
    case notTCP(protocol: UInt8)
    /// A header field that cannot be right (IHL < 5, data offset < 5, lengths that overlap).
    case malformed(String)
    /// A non-first (or incomplete first) IP fragment: not a whole TCP segment.
    case fragment
}

/// A TCP segment's header fields as decoded from one frame, before numbering.
public struct DecodedTCPSegment: Sendable, Equatable {
    public var source: WireEndpoint
    public var destination: WireEndpoint
    public var flags: TCPFlags
    public var seq: UInt32
    public var ack: UInt32
    public var window: UInt16
    public var options: TCPOptions
    /// Payload bytes per the IP length fields (not the capture length, which a snap length cuts).
    public var payloadLength: Int
}

/// Decodes Ethernet / IPv4 / IPv6 / TCP from captured bytes. Pure and bounded: IPv6 extension
/// headers are followed at most `maxExtensionHeaders` deep.
public enum PacketDecoder {
    static let maxExtensionHeaders = 8

    public static func decode(_ bytes: UnsafeRawBufferPointer, link: WireLinkType) throws(WireDecodeError) -> DecodedTCPSegment {
        let reader = ByteReader(bytes)
        var offset = 0
        var etherType: UInt16
        switch link {
        case .ethernet:
            guard let type = reader.u16(12) else { throw .truncated("Ethernet") }
            etherType = type
            offset = 14
            // One 802.1Q tag (a VLAN interface's parent): skip it, once.
            if etherType == 0x8100 {
                guard let inner = reader.u16(16) else { throw .truncated("802.1Q") }
                etherType = inner
                offset = 18
            }
        case .rawIP:
            guard let first = reader.u8(0) else { throw .truncated("IP") }
            etherType = first >> 4 == 6 ? 0x86DD : 0x0800
        }
        switch etherType {
        case 0x0800: return try decodeIPv4(reader, at: offset)
        case 0x86DD: return try decodeIPv6(reader, at: offset)
        default: throw .notIP(etherType: etherType)
        }
    }

    public static func decode(_ bytes: [UInt8], link: WireLinkType) throws(WireDecodeError) -> DecodedTCPSegment {
        let result: Result<DecodedTCPSegment, WireDecodeError> = bytes.withUnsafeBytes { raw in
            do throws(WireDecodeError) { return .success(try decode(raw, link: link)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    static func decodeIPv4(_ reader: ByteReader, at ip: Int) throws(WireDecodeError) -> DecodedTCPSegment {
        guard let versionIHL = reader.u8(ip), let totalLength = reader.u16(ip + 2),
              let fragment = reader.u16(ip + 6), let proto = reader.u8(ip + 9),
              let source = reader.bytes(ip + 12, 4), let destination = reader.bytes(ip + 16, 4)
        else { throw .truncated("IPv4") }
        guard versionIHL >> 4 == 4 else { throw .malformed("IPv4 version \(versionIHL >> 4)") }
        let headerLength = Int(versionIHL & 0x0F) * 4          // options included
        guard headerLength >= 20 else { throw .malformed("IPv4 IHL \(headerLength / 4)") }
        guard reader.count >= ip + headerLength else { throw .truncated("IPv4 options") }
        guard proto == 6 else { throw .notTCP(protocol: proto) }
        guard fragment & 0x3FFF == 0 else { throw .fragment }   // MF set or offset ≠ 0
        // tot_len 0 is BIG TCP's marker for an skb over 64 KiB: the frame length is the truth.
        let ipLength = totalLength == 0 ? reader.count - ip : Int(totalLength)
        guard ipLength >= headerLength else { throw .malformed("IPv4 total length \(totalLength)") }
        return try decodeTCP(reader, at: ip + headerLength, segmentLength: ipLength - headerLength,
                             source: source, destination: destination)
    }

    static func decodeIPv6(_ reader: ByteReader, at ip: Int) throws(WireDecodeError) -> DecodedTCPSegment {
        guard let version = reader.u8(ip), let payloadLength = reader.u16(ip + 4), let firstNext = reader.u8(ip + 6),
              let source = reader.bytes(ip + 8, 16), let destination = reader.bytes(ip + 24, 16)
        else { throw .truncated("IPv6") }
        guard version >> 4 == 6 else { throw .malformed("IPv6 version \(version >> 4)") }
        var next = firstNext
        var offset = ip + 40
        // Payload length 0 is a jumbogram/BIG TCP: the frame length is the truth.
        var remaining = payloadLength == 0 ? reader.count - offset : Int(payloadLength)
        var hops = 0
        while next != 6 {
            hops += 1
            guard hops <= maxExtensionHeaders else { throw .malformed("more than \(maxExtensionHeaders) IPv6 extension headers") }
            let headerLength: Int
            switch next {
            case 0, 43, 60:                                     // hop-by-hop, routing, destination options
                guard let following = reader.u8(offset), let units = reader.u8(offset + 1) else { throw .truncated("IPv6 extension header") }
                headerLength = (Int(units) + 1) * 8
                next = following
            case 44:                                            // fragment
                guard let following = reader.u8(offset), let field = reader.u16(offset + 2) else { throw .truncated("IPv6 fragment header") }
                guard field & 0xFFF9 == 0 else { throw .fragment }   // offset ≠ 0 or more fragments
                headerLength = 8
                next = following
            case 51:                                            // authentication header: 4-byte units
                guard let following = reader.u8(offset), let units = reader.u8(offset + 1) else { throw .truncated("IPv6 AH") }
                headerLength = (Int(units) + 2) * 4
                next = following
            default:
                throw .notTCP(protocol: next)                   // ESP, no-next-header, UDP, ICMPv6...
            }
            guard remaining >= headerLength else { throw .malformed("IPv6 extension header past payload length") }
            remaining -= headerLength
            offset += headerLength
        }
        return try decodeTCP(reader, at: offset, segmentLength: remaining, source: source, destination: destination)
    }

    static func decodeTCP(
        _ reader: ByteReader, at tcp: Int, segmentLength: Int, source: [UInt8], destination: [UInt8]
    ) throws(WireDecodeError) -> DecodedTCPSegment {
        guard let sourcePort = reader.u16(tcp), let destinationPort = reader.u16(tcp + 2),
              let seq = reader.u32(tcp + 4), let ack = reader.u32(tcp + 8),
              let offsetByte = reader.u8(tcp + 12), let flagByte = reader.u8(tcp + 13), let window = reader.u16(tcp + 14)
        else { throw .truncated("TCP") }
        let headerLength = Int(offsetByte >> 4) * 4
        guard headerLength >= 20 else { throw .malformed("TCP data offset \(headerLength / 4)") }
        guard segmentLength >= headerLength else { throw .malformed("TCP header longer than the IP payload") }
        guard let optionBytes = reader.bytes(tcp + 20, headerLength - 20) else { throw .truncated("TCP options") }
        return DecodedTCPSegment(
            source: WireEndpoint(address: source, port: sourcePort),
            destination: WireEndpoint(address: destination, port: destinationPort),
            flags: TCPFlags(rawValue: flagByte), seq: seq, ack: ack, window: window,
            options: TCPOptions.parse(optionBytes[...]), payloadLength: segmentLength - headerLength)
    }
}

/// Big-endian reads that answer nil instead of trapping past the end.
struct ByteReader {
    let base: UnsafeRawBufferPointer
    init(_ base: UnsafeRawBufferPointer) { self.base = base }
    var count: Int { base.count }

    func u8(_ at: Int) -> UInt8? { at >= 0 && at < base.count ? base[at] : nil }
    func u16(_ at: Int) -> UInt16? {
        guard at >= 0, at + 2 <= base.count else { return nil }
        return UInt16(base[at]) << 8 | UInt16(base[at + 1])
    }
    func u32(_ at: Int) -> UInt32? {
        guard let high = u16(at), let low = u16(at + 2) else { return nil }
        return UInt32(high) << 16 | UInt32(low)
    }
    func bytes(_ at: Int, _ length: Int) -> [UInt8]? {
        guard at >= 0, length >= 0, at + length <= base.count else { return nil }
        return Array(base[at..<(at + length)])
    }
}
