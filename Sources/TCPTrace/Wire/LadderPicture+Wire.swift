extension LadderPicture {
    /// A picture of a timeline that may hold `segment` events: they become the picture's
    /// segments (arrows between the lanes), the rest stay events.
    ///
    /// The capture keeps one copy per segment, the receiver's (see PacketCapture), so one
    /// instant stands for both ends of the arrow; on loopback the outgoing copy differs by µs.
    public init(title: String, verdict: Verdict? = nil, timeline: [TraceEvent]) {
        let segments = timeline.compactMap { event -> Segment? in
            guard event.kind == .segment, let wire = event.wire, let sender = wire.sender else { return nil }
            var detail = wire.label(absolute: true)
            if !wire.options.isEmpty { detail += " <\(wire.optionsSummary(absolute: true))>" }
            // Faults: a dropped one never arrives (drawn dashed with ✗); a delayed one left when
            // the relay took it and arrived at its release (its time).
            if let fault = wire.fault { detail += "\n" + fault.note }
            let prefix = wire.fault.map { $0 == .dropped || $0.delayNs != nil ? "" : $0.name + " " } ?? ""
            return Segment(id: wire.id, sentNs: wire.timestampNs - min(wire.fault?.delayNs ?? 0, wire.timestampNs),
                           receivedNs: wire.fault == .dropped ? nil : wire.timestampNs, sender: sender,
                           label: prefix + wire.label(), detail: detail)
        }
        self.init(title: title, verdict: verdict, events: timeline.filter { $0.kind != .segment }, segments: segments)
    }
}
