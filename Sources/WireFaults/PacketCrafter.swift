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
        fixChecksums(&packet, at: 0)
        return packet
    }

    /// A copy of a captured frame's IPv4 TCP packet (starting at `ip`) with its sequence
    /// number replaced (the lab moving an old segment into a new connection's window),
    /// checksums recomputed.
    public static func withSequence(_ frame: [UInt8], ipAt ip: Int, seq: UInt32) -> [UInt8]? {
        guard frame.count >= ip + 40, frame[ip] >> 4 == 4 else { return nil }
        var copy = frame
        let header = Int(frame[ip] & 0x0F) * 4
        guard copy.count >= ip + header + 20 else { return nil }
        put32(&copy, ip + header + 4, seq)
        fixChecksums(&copy, at: ip)
        return copy
    }

    /// Recomputes the IPv4 header checksum and the TCP checksum (over the pseudo-header) of the
    /// IPv4 TCP packet at `start`; anything else is left alone. A sender with checksum offload
    /// leaves only the pseudo-header's sum in the TCP field, which the pcapng would show as bad.
    static func fixChecksums(_ packet: inout [UInt8], at start: Int) {
        guard packet.count >= start + 40, packet[start] >> 4 == 4, packet[start + 9] == 6 else { return }
        let ip = Int(packet[start] & 0x0F) * 4
        let total = min(packet.count - start, Int(packet[start + 2]) << 8 | Int(packet[start + 3]))
        guard ip >= 20, total >= ip + 20 else { return }
        put16(&packet, start + 10, 0)
        put16(&packet, start + 10, ~fold(sum(packet[start..<start + ip])))
        put16(&packet, start + ip + 16, 0)
        let tcpLength = total - ip
        var pseudo = Array(packet[start + 12..<start + 20])
        pseudo += [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF)]
        put16(&packet, start + ip + 16, ~fold(sum(pseudo[...]) + sum(packet[start + ip..<start + total])))
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
