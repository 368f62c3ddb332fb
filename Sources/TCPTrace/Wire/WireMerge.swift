/// `--merge` with segments: both sides' captures saw the same segments, so they are folded into
/// one, renumbered in time order, and the states of both files are stamped with the segments
/// that caused them. Two captures date one segment a few µs apart (measured 1-6 µs between the
/// server's and the client's live captures); a retransmission comes an RTO (≥ 200 ms) later, so
/// identical headers within `window` are one segment.
public enum WireMerge {
    static let window: UInt64 = 1_000_000

    public static func join(_ events: [TraceEvent]) -> [TraceEvent] {
        let captured = events.compactMap(\.wire)
        guard !captured.isEmpty else { return events }
        struct Key: Hashable {
            let source: WireEndpoint, destination: WireEndpoint, seq: UInt32, ack: UInt32, flags: UInt8, length: Int
            let tsValue: UInt32?
        }
        var lastSeen: [Key: UInt64] = [:]
        var unique: [WireSegment] = []
        for segment in captured.sorted(by: { ($0.timestampNs, $0.id) < ($1.timestampNs, $1.id) }) {
            let key = Key(source: segment.source, destination: segment.destination, seq: segment.seq, ack: segment.ack,
                          flags: segment.flags.rawValue, length: segment.length, tsValue: segment.options.timestamp?.value)
            if let previous = lastSeen[key], segment.timestampNs - previous <= window { continue }
            lastSeen[key] = segment.timestampNs
            var renumbered = segment
            renumbered.id = unique.count + 1
            unique.append(renumbered)
        }
        let others = events.filter { $0.kind != .segment }.map { event -> TraceEvent in
            var event = event
            event.segmentID = nil                          // ids of one file mean nothing in the merge
            return event
        }
        return SegmentAttribution.join(events: others, segments: unique)
    }
}
