import SocketKit

/// What the ladder picture shows, independent of how it is drawn: the trace events of both
/// sides, the segments on the wire when they were captured, and a title.
///
/// Segments are this type's own small struct so the picture works with or without a capture:
/// whatever captures packets converts them into `Segment`s.
public struct LadderPicture: Sendable {
    /// One TCP segment between the two sides.
    public struct Segment: Sendable, Equatable {
        public var id: Int
        /// CLOCK_MONOTONIC ns, the same clock as the trace events.
        public var sentNs: UInt64
        /// nil when the segment was not seen arriving (lost, or the capture stopped first).
        public var receivedNs: UInt64?
        public var sender: TraceSide
        /// The lanes it joins; nil picks the side's first non-listener connection.
        public var clientConn: Int?
        public var serverConn: Int?
        /// Short: `SYN seq=0`, `SYN+ACK seq=0 ack=1`.
        public var label: String
        /// Longer text for the tooltip and the HTML details.
        public var detail: String?

        public init(id: Int, sentNs: UInt64, receivedNs: UInt64?, sender: TraceSide, clientConn: Int? = nil,
                    serverConn: Int? = nil, label: String, detail: String? = nil) {
            self.id = id
            self.sentNs = sentNs
            self.receivedNs = receivedNs
            self.sender = sender
            self.clientConn = clientConn
            self.serverConn = serverConn
            self.label = label
            self.detail = detail
        }
    }

    /// How the run was judged, for the title's colour and words.
    public enum Verdict: Sendable, Equatable {
        case matched(String)
        case differs(String)
    }

    public var title: String
    public var verdict: Verdict?
    public var events: [TraceEvent]
    public var segments: [Segment]

    public init(title: String, verdict: Verdict? = nil, events: [TraceEvent], segments: [Segment] = []) {
        self.title = title
        self.verdict = verdict
        self.events = events
        self.segments = segments
    }

    /// Events in time order; equal times keep their recorded order (inferred states are
    /// recorded in the order they must have happened).
    var sortedEvents: [TraceEvent] {
        events.enumerated().sorted {
            ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset)
        }.map(\.element)
    }
}

/// One lifeline: a connection of one side (the server's listener is a connection too).
struct LadderLane: Equatable {
    var side: TraceSide
    var conn: Int
    var isListener: Bool
    var address: String?

    var heading: String {
        "\(side == .client ? "CLIENT" : "SERVER") #\(conn)" + (isListener ? " listener" : "")
    }

    /// Client lanes from the outside in (highest conn leftmost), then server connections from
    /// the inside out with listeners outermost: the connection pairs face each other.
    static func lanes(for events: [TraceEvent]) -> [LadderLane] {
        var found: [LadderLane] = []
        for event in events where event.kind == .state || event.kind == .error || event.kind == .warning {
            guard !found.contains(where: { $0.side == event.side && $0.conn == event.conn }) else { continue }
            let listener = event.kind == .state && event.to == .listen
            found.append(LadderLane(side: event.side, conn: event.conn, isListener: listener,
                                    address: listener ? event.local : event.local.map { "\($0) ⇄ \(event.peer ?? "?")" }))
        }
        // Addresses are known only once connected: take the first event that has them.
        for index in found.indices where found[index].address == nil || found[index].address?.hasPrefix("0.0.0.0") == true {
            let lane = found[index]
            if let event = events.first(where: { $0.side == lane.side && $0.conn == lane.conn && $0.local != nil && $0.peer != nil }) {
                found[index].address = "\(event.local ?? "?") ⇄ \(event.peer ?? "?")"
            }
        }
        let clients = found.filter { $0.side == .client }.sorted { $0.conn > $1.conn }
        let servers = found.filter { $0.side == .server }.sorted {
            ($0.isListener ? 1 : 0, $0.conn) < ($1.isListener ? 1 : 0, $1.conn)
        }
        return clients + servers
    }
}

/// A state held by one lane between two transitions.
struct LadderBand {
    var lane: Int
    var state: TCPState
    /// The event that entered the state (its source says how it was seen).
    var event: Int
    var startNs: UInt64
    /// The event that left it; nil when the trace ended in this state.
    var endEvent: Int?
    var endNs: UInt64?
    var inferred: Bool { source == .inferred || source == nil }
    var source: ObservationSource?
    var unexpected: Bool
    /// Measured time in the state: the next transition's `inStateNs`, or the time between two
    /// observed transitions. nil when unknown (inferred at either end).
    var durationNs: UInt64?
    /// The duration is an upper bound: the state was left at an unseen moment before `endNs`.
    var durationIsBound: Bool
    /// The kernel's timer for the state when it was entered (TIME_WAIT's 60 s).
    var timerMs: UInt32?
    /// CLOSED at the end of a lane is where the socket ends, not a state it stays in.
    var isTerminal: Bool { state == .closed && endEvent == nil }

    /// `● ESTABLISHED 4 ms` / `○ FIN_WAIT_1 not seen` / `◆ TIME_WAIT ≤ 1 ms`.
    var label: String {
        var text = LadderRenderer.mark(source) + " " + state.name
        if unexpected { text += " !" }
        if let ns = durationNs {
            text += "  " + (durationIsBound ? "≤ " : "") + TextTraceRenderer.duration(ns)
        } else if inferred {
            text += "  inferred"
        } else if endNs == nil, state != .closed {
            text += timerMs.map { "  timer " + TextTraceRenderer.duration(UInt64($0) * 1_000_000) + " left at end" } ?? "  at end"
        }
        return text
    }

    /// Bands per lane from the time-ordered events.
    static func bands(events: [TraceEvent], lanes: [LadderLane]) -> [LadderBand] {
        var bands: [LadderBand] = []
        var open: [Int: Int] = [:]   // lane → index of its current band
        for (index, event) in events.enumerated() where event.kind == .state {
            guard let to = event.to,
                  let lane = lanes.firstIndex(where: { $0.side == event.side && $0.conn == event.conn }) else { continue }
            if let current = open[lane] {
                bands[current].endEvent = index
                bands[current].endNs = event.timestampNs
                let previous = bands[current]
                if let measured = event.inStateNs {
                    bands[current].durationNs = measured
                } else if !previous.inferred {
                    bands[current].durationNs = event.timestampNs - previous.startNs
                    bands[current].durationIsBound = event.source == .inferred || event.source == nil
                }
            }
            open[lane] = bands.count
            bands.append(LadderBand(lane: lane, state: to, event: index, startNs: event.timestampNs, endEvent: nil,
                                    endNs: nil, source: event.source, unexpected: event.unexpected,
                                    durationNs: nil, durationIsBound: false, timerMs: event.timerMs))
        }
        return bands
    }
}
