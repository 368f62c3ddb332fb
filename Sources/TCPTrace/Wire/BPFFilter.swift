/// One classic BPF instruction, laid out like the kernel's `struct sock_filter`.
public struct BPFInstruction: Sendable, Equatable {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32
}

/// Builds the kernel-side filter for a capture: TCP over IPv4 or IPv6 whose source or
/// destination port is one of ours, optionally dropping the `PACKET_OUTGOING` copy (on `lo` every
/// segment passes twice, out and back in; one copy is enough). Classic BPF (`SO_ATTACH_FILTER`)
/// needs no privilege beyond the AF_PACKET socket itself, and runs before any copy to user space.
///
/// IPv6 segments behind extension headers are not matched here (the loopback TCP stack sends
/// none); IPv4 options are (the TCP offset is taken from the IHL with `ldxb 4*([n]&0xf)`).
public enum BPFFilter {
    /// Jump offsets are 8-bit: 2 × 64 port tests per family stay far inside them.
    public static let maxPorts = 64

    public enum BuildError: Error, Equatable { case tooManyPorts(Int) }

    // Opcodes (include/uapi/linux/bpf_common.h, filter.h).
    static let ldAbsWord: UInt16 = 0x20, ldAbsHalf: UInt16 = 0x28, ldAbsByte: UInt16 = 0x30
    static let ldIndHalf: UInt16 = 0x48, ldxMsh: UInt16 = 0xB1
    static let jeq: UInt16 = 0x15, jset: UInt16 = 0x45, ja: UInt16 = 0x05, ret: UInt16 = 0x06
    /// Ancillary loads: skb->pkt_type and skb->protocol (SKF_AD_OFF = -0x1000).
    static let pktTypeOffset = UInt32(bitPattern: -0x1000 + 4)
    static let protocolOffset = UInt32(bitPattern: -0x1000 + 0)
    static let packetOutgoing: UInt32 = 4

    /// - Parameters:
    ///   - ports: TCP ports of interest (either end); empty accepts every TCP segment.
    ///   - link: whether frames start with an Ethernet header (SOCK_RAW on lo/Ethernet).
    ///   - dropOutgoing: drop PACKET_OUTGOING copies (right on `lo`, wrong elsewhere).
    ///   - snapLength: bytes kept per accepted packet (the filter's return value).
    public static func program(
        ports: [UInt16], link: WireLinkType, dropOutgoing: Bool, snapLength: UInt32 = 262_144
    ) throws(BuildError) -> [BPFInstruction] {
        let unique = Array(Set(ports)).sorted()
        guard unique.count <= maxPorts else { throw .tooManyPorts(unique.count) }
        var program = Assembler()
        let ip: UInt32 = link == .ethernet ? 14 : 0
        if dropOutgoing {
            program.emit(ldAbsWord, k: pktTypeOffset)
            program.branch(jeq, k: packetOutgoing, ifTrue: "reject", ifFalse: nil)
        }
        if link == .ethernet { program.emit(ldAbsHalf, k: 12) } else { program.emit(ldAbsWord, k: protocolOffset) }
        program.branch(jeq, k: 0x0800, ifTrue: "v4", ifFalse: nil)
        program.branch(jeq, k: 0x86DD, ifTrue: "v6", ifFalse: "reject")

        program.label("v4")
        program.emit(ldAbsByte, k: ip + 9)
        program.branch(jeq, k: 6, ifTrue: nil, ifFalse: "reject")
        program.emit(ldAbsHalf, k: ip + 6)
        program.branch(jset, k: 0x1FFF, ifTrue: "reject", ifFalse: nil)   // a later fragment: no TCP header
        program.emit(ldxMsh, k: ip)                                       // X = IPv4 header length
        program.portTests(unique, load: ldIndHalf, sourceOffset: ip, destinationOffset: ip + 2)

        program.label("v6")
        program.emit(ldAbsByte, k: ip + 6)
        program.branch(jeq, k: 6, ifTrue: nil, ifFalse: "reject")
        program.portTests(unique, load: ldAbsHalf, sourceOffset: ip + 40, destinationOffset: ip + 42)

        program.label("accept")
        program.emit(ret, k: snapLength)
        program.label("reject")
        program.emit(ret, k: 0)
        return program.resolved()
    }

    /// A two-pass assembler: jumps name labels, resolved to relative offsets at the end.
    struct Assembler {
        var instructions: [(BPFInstruction, String?, String?)] = []
        var labels: [String: Int] = [:]

        mutating func emit(_ code: UInt16, k: UInt32) {
            instructions.append((BPFInstruction(code: code, jt: 0, jf: 0, k: k), nil, nil))
        }
        /// nil target = fall through to the next instruction.
        mutating func branch(_ code: UInt16, k: UInt32, ifTrue: String?, ifFalse: String?) {
            instructions.append((BPFInstruction(code: code, jt: 0, jf: 0, k: k), ifTrue, ifFalse))
        }
        mutating func label(_ name: String) { labels[name] = instructions.count }

        mutating func portTests(_ ports: [UInt16], load: UInt16, sourceOffset: UInt32, destinationOffset: UInt32) {
            if ports.isEmpty {
                instructions.append((BPFInstruction(code: BPFFilter.ja, jt: 0, jf: 0, k: 0), "accept", nil))
                return
            }
            for offset in [sourceOffset, destinationOffset] {
                emit(load, k: offset)
                for port in ports { branch(BPFFilter.jeq, k: UInt32(port), ifTrue: "accept", ifFalse: nil) }
            }
            instructions.append((BPFInstruction(code: BPFFilter.ja, jt: 0, jf: 0, k: 0), "reject", nil))
        }

        func resolved() -> [BPFInstruction] {
            instructions.enumerated().map { index, entry in
                var (instruction, ifTrue, ifFalse) = entry
                func distance(_ label: String?) -> Int {
                    guard let label, let target = labels[label] else { return 0 }
                    return target - index - 1
                }
                if instruction.code == BPFFilter.ja {
                    instruction.k = UInt32(distance(ifTrue))
                } else {
                    // Within 0...255 by construction (maxPorts); a wider jump would be a builder bug.
                    instruction.jt = UInt8(clamping: distance(ifTrue))
                    instruction.jf = UInt8(clamping: distance(ifFalse))
                }
                return instruction
            }
        }
    }
}
