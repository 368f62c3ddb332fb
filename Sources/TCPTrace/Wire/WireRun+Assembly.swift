extension WireRun {
    /// Decodes, numbers and joins captured frames with the run's events: the one path from
    /// frames to segments for the AF_PACKET capture (`WireTracer`) and the fault relay, which
    /// passes each frame's fault. Frames stamped after `cut` are left out and counted.
    /// Returns the run, the frames kept and their segments (for the pcapng).
    public static func assemble(frames: [CapturedFrame], faults: [SegmentFault?]?, link: WireLinkType,
                                cut: (ns: UInt64, reason: String)?, statistics: CaptureStatistics,
                                events: [TraceEvent]) -> (run: WireRun, kept: [CapturedFrame], segments: [WireSegment]) {
        var numbering = SegmentNumbering()
        var segments: [WireSegment] = []
        var kept: [CapturedFrame] = []
        var afterCut: [TCPFlags] = []
        var undecoded = 0
        for (index, frame) in frames.enumerated() {
            guard let decoded = try? PacketDecoder.decode(frame.bytes, link: link) else { undecoded += 1; continue }
            if let cut, frame.monotonicNs > cut.ns { afterCut.append(decoded.flags); continue }
            var segment = numbering.number(decoded, timestampNs: frame.monotonicNs, wallNs: frame.wallNs)
            segment.fault = faults?[index]
            segments.append(segment)
            kept.append(frame)
        }
        let joined = SegmentAttribution.join(events: events, segments: segments)
        let run = WireRun(events: joined, segments: joined.compactMap(\.wire), statistics: statistics, undecoded: undecoded,
                          cutReason: cut?.reason, afterCut: afterCut)
        return (run, kept, segments)
    }
}

extension CapturedFrame {
    /// A frame another capture point read (the fault relay reads whole IP packets from TUN
    /// devices, stamped as it reads them).
    public init(bytes: [UInt8], wallNs: Int64, monotonicNs: UInt64) {
        self.init(bytes: bytes, originalLength: bytes.count, wallNs: wallNs, monotonicNs: monotonicNs, packetType: 0)
    }
}

extension CaptureStatistics {
    /// Counters of a capture point that loses nothing it handles (the fault relay).
    public init(relayed packets: Int) {
        self.init()
        self.packets = UInt64(packets)
    }
}
