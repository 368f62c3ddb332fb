import SocketKit
@testable import TCPTrace

/// Builds Ethernet/IP/TCP frames for decoder tests, the way the kernel lays them out on `lo`.
struct FrameBuilder {
    var source: [UInt8] = [127, 0, 0, 1]
    var destination: [UInt8] = [127, 0, 0, 1]
    var sourcePort: UInt16 = 40000
    var destinationPort: UInt16 = 7007
    var seq: UInt32 = 1000
    var ack: UInt32 = 0
    var flags: TCPFlags = .syn
    var window: UInt16 = 65495
    var tcpOptions: [UInt8] = []
    var payload: [UInt8] = []
    var ipv4Options: [UInt8] = []
    /// IPv6 only: raw extension headers, each (next-header value announcing it, bytes).
    var ipv6Extensions: [(UInt8, [UInt8])] = []

    var isIPv6: Bool { source.count == 16 }

    func tcpHeader() -> [UInt8] {
        var options = tcpOptions
        while options.count % 4 != 0 { options.append(1) }
        var bytes: [UInt8] = []
        bytes += be16(sourcePort) + be16(destinationPort) + be32(seq) + be32(ack)
        bytes.append(UInt8((20 + options.count) / 4) << 4)
        bytes.append(flags.rawValue)
        bytes += be16(window) + [0, 0] + [0, 0]        // checksum, urgent pointer
        return bytes + options + payload
    }

    func frame() -> [UInt8] {
        let tcp = tcpHeader()
        var ip: [UInt8]
        if isIPv6 {
            var chain: [UInt8] = []
            var firstNext: UInt8 = 6
            for (index, extensionHeader) in ipv6Extensions.enumerated() {
                if index == 0 { firstNext = extensionHeader.0 }
                var header = extensionHeader.1
                header[0] = index + 1 < ipv6Extensions.count ? ipv6Extensions[index + 1].0 : 6
                chain += header
            }
            ip = [0x60, 0, 0, 0] + be16(UInt16(chain.count + tcp.count)) + [firstNext, 64] + source + destination + chain
            return [UInt8](repeating: 0, count: 12) + [0x86, 0xDD] + ip + tcp
        }
        let headerLength = 20 + ipv4Options.count
        ip = [0x40 | UInt8(headerLength / 4), 0] + be16(UInt16(headerLength + tcp.count)) + [0, 1, 0x40, 0, 64, 6, 0, 0]
            + source + destination + ipv4Options
        return [UInt8](repeating: 0, count: 12) + [0x08, 0x00] + ip + tcp
    }

    func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    func be32(_ value: UInt32) -> [UInt8] { be16(UInt16(value >> 16)) + be16(UInt16(value & 0xFFFF)) }
}

/// SplitMix64: a seeded generator so a failing fuzz case can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Linux's SYN options on loopback: mss 65495, sackOK, TS, nop, wscale 7.
let linuxSYNOptions: [UInt8] = [2, 4, 0xFF, 0xD7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]
