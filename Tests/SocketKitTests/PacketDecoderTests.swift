import Testing
import SocketKit
@testable import TCPTrace

@Suite struct PacketDecoderTests {
    @Test func decode_ipv4SYN_readsHeaderAndOptions() throws {
        let frame = FrameBuilder(seq: 0xDEAD_BEEF, flags: .syn, tcpOptions: linuxSYNOptions).frame()
        let segment = try PacketDecoder.decode(frame, link: .ethernet)
        #expect(segment.source.description == "127.0.0.1:40000")
        #expect(segment.destination.description == "127.0.0.1:7007")
        #expect(segment.flags == .syn)
        #expect(segment.seq == 0xDEAD_BEEF)
        #expect(segment.window == 65495)
        #expect(segment.payloadLength == 0)
        #expect(segment.options.mss == 65495)
        #expect(segment.options.sackPermitted)
        #expect(segment.options.timestamp == TCPOptions.Timestamp(value: 1, echoReply: 0))
        #expect(segment.options.windowScale == 7)
        #expect(!segment.options.malformed)
        #expect(segment.options.summary == "mss 65495,sackOK,TS val 1 ecr 0,wscale 7")
    }

    @Test func decode_ipv4WithOptions_findsTCPAfterIHL() throws {
        // Record-route style option padding: 8 bytes of IP options (IHL 7).
        let frame = FrameBuilder(flags: [.psh, .ack], payload: Array("hello".utf8), ipv4Options: [7, 7, 4, 0, 0, 0, 0, 1]).frame()
        let segment = try PacketDecoder.decode(frame, link: .ethernet)
        #expect(segment.flags == [.psh, .ack])
        #expect(segment.flags.description == "PSH+ACK")
        #expect(segment.payloadLength == 5)
        #expect(segment.destination.port == 7007)
    }

    @Test func decode_ethernetPadding_usesIPLengthNotFrameLength() throws {
        let frame = FrameBuilder(flags: .ack).frame() + [0, 0, 0, 0, 0, 0]
        #expect(try PacketDecoder.decode(frame, link: .ethernet).payloadLength == 0)
    }

    @Test func decode_ipv6WithExtensionHeaders_skipsThem() throws {
        var builder = FrameBuilder(source: [UInt8](repeating: 0, count: 15) + [1], destination: [UInt8](repeating: 0, count: 15) + [1])
        builder.flags = [.fin, .ack]
        builder.payload = [1, 2, 3]
        builder.ipv6Extensions = [
            (0, [0, 0, 1, 4, 0, 0, 0, 0]),                      // hop-by-hop, PadN
            (60, [0, 1] + [UInt8](repeating: 0, count: 14)),    // destination options, 16 bytes
            (44, [0, 0, 0, 0, 0, 0, 0, 42]),                    // fragment header, offset 0, last
        ]
        let segment = try PacketDecoder.decode(builder.frame(), link: .ethernet)
        #expect(segment.source.description == "[::1]:40000")
        #expect(segment.flags.description == "FIN+ACK")
        #expect(segment.payloadLength == 3)
    }

    @Test func decode_rawIPLink_readsIPv4WithoutEthernet() throws {
        let frame = Array(FrameBuilder(flags: .rst).frame().dropFirst(14))
        #expect(try PacketDecoder.decode(frame, link: .rawIP).flags == .rst)
    }

    @Test func decode_rejectsFragmentsAndOtherProtocols() {
        var laterFragment = FrameBuilder(flags: .ack).frame()
        laterFragment[14 + 6] = 0x00; laterFragment[14 + 7] = 0x10   // offset 16 × 8 bytes
        #expect(throws: WireDecodeError.fragment) { try PacketDecoder.decode(laterFragment, link: .ethernet) }
        var udp = FrameBuilder(flags: .ack).frame()
        udp[14 + 9] = 17
        #expect(throws: WireDecodeError.notTCP(protocol: 17)) { try PacketDecoder.decode(udp, link: .ethernet) }
        var arp = FrameBuilder().frame()
        arp[12] = 0x08; arp[13] = 0x06
        #expect(throws: WireDecodeError.notIP(etherType: 0x0806)) { try PacketDecoder.decode(arp, link: .ethernet) }
    }

    @Test func decode_everyTruncation_throwsInsteadOfTrapping() {
        let frames = [
            FrameBuilder(flags: .syn, tcpOptions: linuxSYNOptions).frame(),
            FrameBuilder(source: [UInt8](repeating: 0, count: 15) + [1], destination: [UInt8](repeating: 0, count: 15) + [1],
                         flags: .syn, tcpOptions: linuxSYNOptions, ipv6Extensions: [(0, [0, 0, 1, 4, 0, 0, 0, 0])]).frame(),
        ]
        for frame in frames {
            // Cut inside the headers: must fail; cuts inside the payload are legal snap lengths.
            let headerEnd = frame.count
            for length in 0..<headerEnd {
                #expect(throws: WireDecodeError.self) { try PacketDecoder.decode(Array(frame.prefix(length)), link: .ethernet) }
            }
        }
    }

    @Test func decode_impossibleLengths_areMalformed() {
        var shortIHL = FrameBuilder(flags: .ack).frame()
        shortIHL[14] = 0x44
        #expect(throws: WireDecodeError.malformed("IPv4 IHL 4")) { try PacketDecoder.decode(shortIHL, link: .ethernet) }
        var shortTotal = FrameBuilder(flags: .ack).frame()
        shortTotal[14 + 2] = 0; shortTotal[14 + 3] = 30       // IP says 30 bytes: TCP header cannot fit
        #expect(throws: WireDecodeError.malformed("TCP header longer than the IP payload")) {
            try PacketDecoder.decode(shortTotal, link: .ethernet)
        }
        var smallOffset = FrameBuilder(flags: .ack).frame()
        smallOffset[14 + 20 + 12] = 0x40
        #expect(throws: WireDecodeError.malformed("TCP data offset 4")) { try PacketDecoder.decode(smallOffset, link: .ethernet) }
    }

    /// Whatever a hostile peer sends must not crash the decoder: random frames, and valid frames
    /// with random bytes overwritten, cut or extended. Seeded, so a failure can be replayed.
    @Test(arguments: [UInt64(1), 2, 3, 0x5EED])
    func decode_fuzz_randomAndMutatedBytes_neverTrap(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let valid = [
            FrameBuilder(flags: .syn, tcpOptions: linuxSYNOptions).frame(),
            FrameBuilder(flags: [.ack], tcpOptions: [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 20, 0, 0, 0, 30], payload: [9, 9]).frame(),
            FrameBuilder(source: [UInt8](repeating: 0, count: 15) + [1], destination: [UInt8](repeating: 0, count: 15) + [1],
                         flags: [.fin, .ack], ipv6Extensions: [(0, [0, 0, 1, 4, 0, 0, 0, 0]), (43, [0, 0, 0, 0, 0, 0, 0, 0])]).frame(),
        ]
        var decoded = 0, rejected = 0
        for round in 0..<6_000 {
            var bytes: [UInt8]
            if round % 3 == 0 {
                bytes = (0..<Int.random(in: 0...120, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                if bytes.count > 14 && Bool.random(using: &random) { bytes[12] = 0x08; bytes[13] = 0 }   // reach the IP parser
            } else {
                bytes = valid[round % valid.count]
                for _ in 0..<Int.random(in: 1...6, using: &random) {
                    let index = Int.random(in: 0..<bytes.count, using: &random)
                    bytes[index] = UInt8.random(in: 0...255, using: &random)
                }
                if Int.random(in: 0..<4, using: &random) == 0 { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random))) }
            }
            let link: WireLinkType = round % 7 == 0 ? .rawIP : .ethernet
            do {
                let segment = try PacketDecoder.decode(bytes, link: link)
                #expect(segment.payloadLength >= 0)
                _ = segment.options.summary
                decoded += 1
            } catch {
                rejected += 1
            }
        }
        // Both paths must actually be exercised, or the test proves nothing.
        #expect(decoded > 100)
        #expect(rejected > 100)
    }
}
