import Glibc
import Testing
import SocketKit
@testable import TCPTrace

/// AF_PACKET needs CAP_NET_RAW in the current network namespace (root here, or inside unshare -Urn).
let captureAvailable: Bool = WireTracer.probe() == nil

@Suite(.serialized, .enabled(if: captureAvailable, "needs CAP_NET_RAW for AF_PACKET (root, or a user+net namespace)"))
struct PacketCaptureTests {
    func drain(_ capture: PacketCapture, numbering: inout SegmentNumbering) throws -> [(WireSegment, CapturedFrame)] {
        var result: [(WireSegment, CapturedFrame)] = []
        var idle = 0
        while idle < 20 {                                  // 200 ms without a frame ends the capture
            guard let frame = try capture.readFrame() else { idle += 1; usleep(10_000); continue }
            idle = 0
            let decoded = try PacketDecoder.decode(frame.bytes, link: capture.link)
            result.append((numbering.number(decoded, timestampNs: frame.monotonicNs, wallNs: frame.wallNs), frame))
        }
        return result
    }

    @Test(arguments: [AF_INET, AF_INET6])
    func loopback_capturesOneCopyPerSegment_matchingTcpInfoCounters(family: Int32) throws {
        let exchange = try LoopbackExchange(family: family)
        defer { exchange.close() }
        let other = try LoopbackExchange(family: family)   // traffic the filter must keep out
        defer { other.close() }
        let capture = try PacketCapture(interfaceIndex: Int32(if_nametoindex("lo")), ports: [exchange.port])
        defer { capture.close() }
        #expect(capture.isLoopback && capture.link == .ethernet)
        let counters = try exchange.run()
        _ = try other.run()
        var numbering = SegmentNumbering()
        let captured = try drain(capture, numbering: &numbering)
        let segments = captured.map(\.0)

        #expect(segments.allSatisfy { $0.source.port == exchange.port || $0.destination.port == exchange.port })
        #expect(captured.allSatisfy { $0.1.packetType != 4 })     // no PACKET_OUTGOING copies
        let fromClient = segments.filter { $0.destination.port == exchange.port }
        let toClient = segments.filter { $0.source.port == exchange.port }
        #expect(UInt32(fromClient.count) == counters.segsOut, "\(segments.map { $0.label() })")
        #expect(UInt32(toClient.count) == counters.segsIn, "\(segments.map { $0.label() })")
        try #require(segments.count >= 3)
        #expect(segments[0].flags == .syn && segments[0].relativeSeq == 0)
        #expect(segments[1].flags == [.syn, .ack] && segments[1].relativeAck == 1)   // ack = client ISN + 1
        #expect(segments[1].ack == segments[0].seq &+ 1)
        #expect(segments[2].flags == .ack && segments[2].ack == segments[1].seq &+ 1)
        #expect(segments[0].options.mss != nil && segments[0].options.windowScale != nil)
        #expect(segments.contains { $0.length == 5 && $0.flags.contains(.psh) })
        #expect(segments.filter { $0.flags.contains(.fin) }.count == 2)
        // Kernel timestamps, moved to CLOCK_MONOTONIC, are ordered and not in the future.
        #expect(zip(segments, segments.dropFirst()).allSatisfy { $0.timestampNs <= $1.timestampNs })
        #expect(segments.allSatisfy { $0.timestampNs <= MonotonicClock.now() })
        let stats = try capture.statistics()
        #expect(stats.drops == 0)
        #expect(stats.packets == UInt64(segments.count))
    }

    @Test func filter_withoutPorts_acceptsAllTCP_andReattachNarrowsIt() throws {
        let first = try LoopbackExchange(family: AF_INET)
        defer { first.close() }
        let capture = try PacketCapture(interfaceIndex: Int32(if_nametoindex("lo")), ports: [])
        defer { capture.close() }
        _ = try first.run()
        var numbering = SegmentNumbering()
        #expect(try drain(capture, numbering: &numbering).contains { $0.0.destination.port == first.port })
        try capture.attach(ports: [1])                     // nothing of ours on port 1
        _ = try first.run()
        #expect(try drain(capture, numbering: &numbering).isEmpty)
    }
}
