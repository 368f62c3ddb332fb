import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// The lab while it runs: every event of every try kept (tagged with its try), the states and
/// the captured segments printed as they happen when a terminal watches, and on Ctrl-C what was
/// seen so far with the verdict "interrupted". The final ladder (segments joined, causal order)
/// comes at the end.
///
/// With a capture (`LabLiveFeed`), rows are held for a few milliseconds and printed in time
/// order each time the feed has read the capture up to a moment (`release(upTo:)`): a state is
/// read before the segment that caused it is read off the capture, and must not be printed
/// above it.
/// Sendable as checked by the compiler: the events are behind `state`'s lock, `renderer` is an
/// immutable value, and `print` is a `@Sendable` writer (the caller's `TraceStream.write`,
/// which writes under its own lock) that may run on any emitting thread.
public final class LabLiveView: TraceSink, Sendable {
    private struct State {
        var events: [TraceEvent] = []
        var attempt = 1
        var baseNs: UInt64?
        var headerShown = false
        /// Rows wait here for `release(upTo:)` while a feed reads the capture.
        var holding = false
        var pending: [TraceEvent] = []
        /// The latest stamp printed so far.
        var shownNs: UInt64 = 0
        /// Ctrl-C's report is being written: no live row after it.
        var silenced = false
        /// Our sockets' addresses (from the events): who sent a segment, and on which connection.
        var sideOf: [String: TraceSide] = [:]
        var connOf: [String: Int] = [:]
    }
    private let state = Mutex(State())
    private let print: (@Sendable (String) -> Void)?
    private let renderer: LadderRenderer
    public let startNs = MonotonicClock.now()

    /// - Parameter print: where live rows go (nil: keep only, for JSON and files).
    public init(color: Bool, width: Int?, print: (@Sendable (String) -> Void)?) {
        self.print = print
        renderer = LadderRenderer(color: color, width: width)
    }

    /// Whether rows are printed live (a terminal watches).
    public var printsRows: Bool { print != nil }

    /// The next try begins: its events carry `attempt`, its rows start from its own zero.
    public func begin(attempt: Int) {
        state.locked { $0.attempt = attempt; $0.baseNs = nil }
        if attempt > 1 { print?("\ntry \(attempt):\n") }
    }

    public func emit(_ event: TraceEvent) {
        var event = event
        let rows: String? = state.locked { s in
            event.attempt = s.attempt
            s.events.append(event)
            if let local = event.local, event.kind != .segment {
                s.sideOf[local] = event.side
                if let peer = event.peer { s.connOf[local + "|" + peer] = event.conn }
            }
            return show(event, in: &s)
        }
        if let rows { print?(rows) }
    }

    /// A segment the feed read off the capture: on the side and connection our sockets' events
    /// name, kept and shown like any event.
    func add(segment: WireSegment) {
        var segment = segment
        let rows: String? = state.locked { s in
            segment.sender = segment.sender ?? SegmentAttribution.sender(of: segment, sideOf: s.sideOf)
            let (source, destination) = (segment.source.description, segment.destination.description)
            var event = TraceEvent(segment: segment, conn: s.connOf[source + "|" + destination] ?? s.connOf[destination + "|" + source] ?? 0)
            event.attempt = s.attempt
            s.events.append(event)
            return show(event, in: &s)
        }
        if let rows { print?(rows) }
    }

    /// No live row from now on (Ctrl-C: the report of what was seen comes last); events are
    /// still kept.
    public func silence() { state.locked { $0.silenced = true } }

    /// From now on rows wait for `release(upTo:)` (a feed reads the capture).
    func hold() { state.locked { $0.holding = true } }

    /// Prints the held rows stamped at or before `ns`, in time order; `.max` prints them all and
    /// stops holding.
    func release(upTo ns: UInt64) {
        let rows: String? = state.locked { s in
            if ns == .max { s.holding = false }
            guard !s.silenced, s.pending.contains(where: { $0.timestampNs <= ns }) else { return nil }
            let due = s.pending.filter { $0.timestampNs <= ns }
            s.pending.removeAll { $0.timestampNs <= ns }
            return render(attributed(due, in: s), in: &s)
        }
        if let rows { print?(rows) }
    }

    /// The rows due, joined with the try's segments and put in causal order as the final ladder's
    /// are (`SegmentAttribution`, `CausalOrder`): a state names the segment that caused it, an
    /// inferred state takes its segment's time (SYN_SENT before the SYN its connect() sent), and
    /// a state read late is restamped inside its interval, saying so. Only among the rows due:
    /// one printed already stays where it is, and an inferred state whose segment is printed
    /// already (the accepted socket's SYN_RECEIVED, inferred at accept(), long after its SYN in
    /// slow motion) keeps the time it was inferred, below it; the final ladder dates it by its
    /// segment. The due segments are kept as this view numbered and placed them.
    private func attributed(_ due: [TraceEvent], in s: State) -> [TraceEvent] {
        let numbered = Dictionary(due.filter { $0.kind == .segment }.map { ($0.segmentID ?? 0, $0) }) { first, _ in first }
        let segments = s.events.filter { $0.kind == .segment && $0.attempt == s.attempt }.compactMap(\.wire)
        let joined = SegmentAttribution.join(events: due.filter { $0.kind != .segment }, segments: segments).compactMap { event in
            guard event.kind == .state else { return event.kind == .segment ? event.segmentID.flatMap { numbered[$0] } : event }
            guard event.timestampNs < s.shownNs, let read = event.latestNs, read >= s.shownNs else { return event }
            var event = event
            event.timestampNs = read
            return event
        }
        return CausalOrder.apply(joined)
    }

    /// Inside the lock: the rows of `event` now, or nil (held, not printed, or nobody watches).
    private func show(_ event: TraceEvent, in s: inout State) -> String? {
        guard print != nil, !s.silenced, [.state, .warning, .error, .segment].contains(event.kind) else { return nil }
        if s.holding {
            s.pending.append(event)
            return nil
        }
        return render([event], in: &s)
    }

    /// Inside the lock: rows (with the header before the first), times from the try's first row.
    private func render(_ events: [TraceEvent], in s: inout State) -> String {
        var lines: [String] = []
        for event in events {
            // A row printed late (its segment read after a later one was shown) is dated at 0, not
            // wrapped around.
            let base = min(s.baseNs ?? event.timestampNs, event.timestampNs)
            s.baseNs = s.baseNs ?? base
            s.shownNs = max(s.shownNs, event.timestampNs)
            lines += renderer.rows([event], base: base)
        }
        if !s.headerShown {
            s.headerShown = true
            lines.insert(renderer.header(), at: 0)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public func flush() {}

    /// Every event so far (all tries).
    public var events: [TraceEvent] { state.locked { $0.events } }
    public var attempt: Int { state.locked { $0.attempt } }
    /// The current try's events.
    public var currentTry: [TraceEvent] { state.locked { s in s.events.filter { $0.attempt == s.attempt } } }
}
