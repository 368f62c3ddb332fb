import SocketKit

/// Joins captured segments with both sides' trace events: each segment learns which side sent
/// it, and each state event learns the segment that caused it, following RFC 9293 §3.10
/// (SYN+ACK moves SYN_SENT → ESTABLISHED, the ACK of our FIN moves FIN_WAIT_1 → FIN_WAIT_2, the
/// peer's FIN moves ESTABLISHED → CLOSE_WAIT...). Only *received* segments cause states here;
/// transitions our own calls make (connect → SYN_SENT, close → FIN_WAIT_1) name none.
///
/// A state is never stamped before its segment: an observed state only matches a segment
/// captured at or before it; an inferred one (whose time is only "between two observations")
/// may match a later segment, up to the socket's next observed state, and then takes the
/// segment's time.
public enum SegmentAttribution {
    public static func join(events: [TraceEvent], segments: [WireSegment]) -> [TraceEvent] {
        var sideOf: [String: TraceSide] = [:]
        var connOf: [String: Int] = [:]
        for event in events where event.kind != .segment {
            if let local = event.local { sideOf[local] = event.side }
            if let local = event.local, let peer = event.peer { connOf[local + "|" + peer] = event.conn }
        }
        var joined: [WireSegment] = segments.map { segment in
            var segment = segment
            segment.sender = sender(of: segment, sideOf: sideOf)
            return segment
        }
        joined.sort { ($0.timestampNs, $0.id) < ($1.timestampNs, $1.id) }
        let segmentEvents = joined.map { segment in
            let key = segment.source.description + "|" + segment.destination.description
            let reverse = segment.destination.description + "|" + segment.source.description
            return TraceEvent(segment: segment, conn: connOf[key] ?? connOf[reverse] ?? 0)
        }

        var states = events
        var announced: Set<Int> = []
        let groups = Dictionary(grouping: states.indices.filter { states[$0].kind == .state }) {
            "\(states[$0].side.rawValue)#\(states[$0].conn)"
        }
        for (_, indices) in groups {
            let ordered = indices.sorted { (states[$0].timestampNs, $0) < (states[$1].timestampNs, $1) }
            guard let local = ordered.compactMap({ states[$0].local }).last else { continue }
            // A listener (no peer) changes state only through our calls; its port's segments
            // belong to the connections accepted from it.
            guard let peer = ordered.compactMap({ states[$0].peer }).last else { continue }
            // A segment the fault layer dropped never reached this socket.
            let received = joined.filter { $0.destination.description == local && $0.source.description == peer && $0.fault != .dropped }
            let ourFIN = joined.first {
                $0.source.description == local && $0.destination.description == peer && $0.flags.contains(.fin)
            }
            let sent = joined.filter { $0.source.description == local && $0.destination.description == peer }
            var cursor = 0
            var previousNs: UInt64 = 0
            for (position, index) in ordered.enumerated() {
                let event = states[index]
                // The kernel's LISTEN → SYN_RECEIVED comes at the final ACK (the request socket
                // held the SYN until then): dated, like an inferred state, by its SYN.
                let inferred = event.source == .inferred || (event.source == .tracepoint && event.from == .listen && event.to == .synReceived)
                let limit: UInt64 = inferred
                    ? ordered[(position + 1)...].first { states[$0].source != .inferred }.map { states[$0].timestampNs } ?? .max
                    : event.timestampNs
                if let from = event.from, let to = event.to,
                   let found = received.indices.dropFirst(cursor).first(where: {
                       received[$0].timestampNs <= limit && causes(received[$0], from: from, to: to, ourFIN: ourFIN)
                           && !unanswered(received[$0], received: received, sent: sent)
                   }) {
                    states[index].segmentID = received[found].id
                    if inferred {
                        // An inferred state happened when its segment arrived: that is its time,
                        // and what the segment did is its cause (the call that revealed it is not).
                        states[index].timestampNs = received[found].timestampNs
                        states[index].earliestNs = received[found].timestampNs
                        states[index].cause = effect(of: received[found], from: from, to: to, sent: sent)
                            + (event.source == .tracepoint ? "; the kernel's tracepoint reported it only when the final ACK created the connection's socket"
                                : event.cause.hasPrefix("between ")
                                ? "; inferred " + String(event.cause.prefix { $0 != ":" }) : "; inferred: " + event.cause)
                    }
                    // The same segment may move the socket on again (Linux handles a FIN+ACK's ACK
                    // first, FIN_WAIT_1 → FIN_WAIT_2, then its FIN → TIME_WAIT).
                    cursor = found
                } else if inferred, let from = event.from, let to = event.to,
                          let own = sent.first(where: { $0.timestampNs <= limit && announces($0, from: from, to: to) }) {
                    // A state our own call entered (connect → SYN_SENT, close → FIN_WAIT_1) began
                    // no later than the segment that call sent: the wire dates it.
                    states[index].timestampNs = min(event.timestampNs, own.timestampNs)
                    announced.insert(index)
                }
                // Keep each socket's states in order after an inferred one moved.
                if states[index].timestampNs < previousNs { states[index].timestampNs = previousNs }
                // The time in the previous state follows a moved start (the kernel's late
                // SYN_RECEIVED: its time in the state runs from the SYN, not from the report).
                if position > 0, let measured = states[index].inStateNs {
                    let before = ordered[position - 1]
                    if states[before].timestampNs != event.timestampNs - min(measured, event.timestampNs),
                       states[before].source == .tracepoint, states[index].timestampNs >= states[before].timestampNs {
                        states[index].inStateNs = states[index].timestampNs - states[before].timestampNs
                    }
                }
                previousNs = states[index].timestampNs
            }
        }
        // One timeline: at equal times a state our call entered comes before the segment it
        // sent, and a state a segment caused comes after it.
        func rank(_ index: Int) -> Int {
            announced.contains(index) ? 0 : (states[index].segmentID != nil ? 2 : 1)
        }
        let ranked = segmentEvents.enumerated().map { (event: $0.element, rank: 1, order: $0.offset) }
            + states.indices.map { (event: states[$0], rank: rank($0), order: segmentEvents.count + $0) }
        return ranked.sorted { ($0.event.timestampNs, $0.rank, $0.order) < ($1.event.timestampNs, $1.rank, $1.order) }.map(\.event)
    }

    /// Which side sent `segment`, from the sides of the addresses our sockets hold (`sideOf`:
    /// an event's `local` → its side): its source's side, or the other side of its destination's.
    public static func sender(of segment: WireSegment, sideOf: [String: TraceSide]) -> TraceSide? {
        sideOf[segment.source.description] ?? sideOf[segment.destination.description].map { $0 == .client ? .server : .client }
    }

    /// Whether sending `segment` is what entering `to` from `from` does (our calls' segments).
    static func announces(_ segment: WireSegment, from: TCPState, to: TCPState) -> Bool {
        switch (from, to) {
        case (.closed, .synSent): return segment.flags == .syn
        case (.established, .finWait1), (.synReceived, .finWait1), (.closeWait, .lastAck): return segment.flags.contains(.fin)
        default: return false
        }
    }

    /// Whether receiving `segment` moves a socket from `from` to `to` (RFC 9293 §3.10.7).
    static func causes(_ segment: WireSegment, from: TCPState, to: TCPState, ourFIN: WireSegment?) -> Bool {
        let flags = segment.flags
        let acksOurFIN: Bool = {
            guard flags.contains(.ack), let fin = ourFIN else { return false }
            return Int32(bitPattern: segment.ack &- (fin.seq &+ fin.sequenceLength)) >= 0
        }()
        if flags.contains(.rst) {
            return to == .closed || (from == .synReceived && to == .listen)
        }
        switch (from, to) {
        case (.synSent, .established): return flags.contains([.syn, .ack])
        case (.synSent, .synReceived), (.listen, .synReceived): return flags.contains(.syn) && !flags.contains(.ack)
        case (.synReceived, .established): return flags.contains(.ack)
        case (.listen, .established): return flags.contains(.ack) && !flags.contains(.syn)
        case (.established, .closeWait), (.finWait2, .timeWait): return flags.contains(.fin)
        case (.finWait1, .finWait2): return acksOurFIN
        case (.finWait1, .closing): return flags.contains(.fin) && !acksOurFIN
        case (.finWait1, .timeWait): return flags.contains(.fin) && acksOurFIN
        case (.closing, .timeWait), (.lastAck, .closed): return acksOurFIN
        default: return false
        }
    }
}
