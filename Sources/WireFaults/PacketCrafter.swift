import TCPTrace

/// Builds IPv4 + TCP packets the lab injects, with both checksums right, so the receiving
/// kernel treats them like any segment from the wire (a wrong checksum is dropped silently,
/// counted in TcpInCsumErrors, and would show nothing).
public enum PacketCrafter {
    /// A segment from `source` to `destination` with the given header fields and payload.
    public static func segment(from source: WireEndpoint, to destination: WireEndpoint, seq: UInt32, ack: UInt32,
                               flags: TCPFlags, window: UInt16 = 65535, payload: [UInt8] = []) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 40)
        let total = 40 + payload.count
        packet[0] = 0x45                                   // IPv4, 20-byte header
        put16(&packet, 2, UInt16(total))
        put16(&packet, 6, 0x4000)                          // DF
        packet[8] = 64                                     // TTL
        packet[9] = 6                                      // TCP
        packet.replaceSubrange(12..<16, with: source.address)
        packet.replaceSubrange(16..<20, with: destination.address)
        put16(&packet, 20, source.port)
        put16(&packet, 22, destination.port)
        put32(&packet, 24, seq)
        put32(&packet, 28, ack)
        packet[32] = 5 << 4                                // data offset: 20 bytes, no options
        packet[33] = flags.rawValue
        put16(&packet, 34, window)
        packet += payload
        fixChecksums(&packet)
        return packet
    }

    /// A copy of a captured IPv4 TCP packet with its sequence number replaced (the lab moving
    /// an old segment into a new connection's window), checksums recomputed.
    public static func withSequence(_ packet: [UInt8], seq: UInt32) -> [UInt8]? {
        guard packet.count >= 40, packet[0] >> 4 == 4 else { return nil }
        var copy = packet
        let ip = Int(packet[0] & 0x0F) * 4
        guard copy.count >= ip + 20 else { return nil }
        put32(&copy, ip + 4, seq)
        fixChecksums(&copy)
        return copy
    }

    /// Recomputes the IPv4 header checksum and the TCP checksum (over the pseudo-header).
    static func fixChecksums(_ packet: inout [UInt8]) {
        let ip = Int(packet[0] & 0x0F) * 4
        let total = min(packet.count, Int(packet[2]) << 8 | Int(packet[3]))
        put16(&packet, 10, 0)
        put16(&packet, 10, ~fold(sum(packet[0..<ip])))
        put16(&packet, ip + 16, 0)
        let tcpLength = total - ip
        var pseudo = Array(packet[12..<20])
        pseudo += [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF)]
        put16(&packet, ip + 16, ~fold(sum(pseudo[...]) + sum(packet[ip..<total])))
    }

    /// RFC 1071 one's-complement sum of 16-bit words (an odd last byte padded with zero).
    static func sum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var total: UInt32 = 0
        var index = bytes.startIndex
        while index + 1 < bytes.endIndex {
            total += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.endIndex { total += UInt32(bytes[index]) << 8 }
        return total
    }

    static func fold(_ value: UInt32) -> UInt16 {
        var total = value
        while total >> 16 != 0 { total = (total & 0xFFFF) + (total >> 16) }
        return UInt16(total)
    }

    static func put16(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value >> 8)
        bytes[offset + 1] = UInt8(value & 0xFF)
    }

    static func put32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
        put16(&bytes, offset, UInt16(value >> 16))
        put16(&bytes, offset + 2, UInt16(value & 0xFFFF))
    }
}
