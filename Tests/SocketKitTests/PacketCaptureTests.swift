import Glibc
import Testing
import SocketKit
@testable import TCPTrace

/// AF_PACKET needs CAP_NET_RAW in the current network namespace (root here, or inside unshare -Urn).
let captureAvailable: Bool = WireTracer.probe() == nil

@Suite(.serialized, .enabled(if: captureAvailable, "needs CAP_NET_RAW for AF_PACKET (root, or a user+net namespace)"))
struct PacketCaptureTests {
    /// Everything captured until 200 ms pass without a frame, bounded by count and time: on a
    /// busy host an unfiltered capture never goes quiet (it once grew this process to 2.5 GB).
    func drain(_ capture: PacketCapture, numbering: inout SegmentNumbering,
               maxFrames: Int = 20_000, seconds: Double = 3) throws -> [(WireSegment, CapturedFrame)] {
        var result: [(WireSegment, CapturedFrame)] = []
        let deadline = MonotonicClock.now() + UInt64(seconds * 1e9)
        var quietSince = MonotonicClock.now()
        while result.count < maxFrames && MonotonicClock.now() < deadline
                && MonotonicClock.now() - quietSince < 200_000_000 {
            var frames: [CapturedFrame] = []
            try capture.drain(maxFrames: maxFrames - result.count) { frames.append($0) }
            if frames.isEmpty {
                var ready = pollfd(fd: capture.fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&ready, 1, 10)
                continue
            }
            quietSince = MonotonicClock.now()
            for frame in frames {
                let decoded = try PacketDecoder.decode(frame.bytes, link: capture.link)
                result.append((numbering.number(decoded, timestampNs: frame.monotonicNs, wallNs: frame.wallNs), frame))
            }
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
        // Frames queued before the attach passed the old filter (on a busy host, other
        // processes' traffic): only what the kernel stamped after it must be filtered.
        let attached = MonotonicClock.now()
        _ = try first.run()
        let after = try drain(capture, numbering: &numbering).filter { $0.1.monotonicNs > attached }
        #expect(after.isEmpty, "\(after.count) frames passed the port-1 filter")
    }
}
