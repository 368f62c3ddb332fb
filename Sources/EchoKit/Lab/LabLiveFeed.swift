import Glibc
import SocketKit
import Synchronization
import TCPTrace
import WireFaults

/// The try's segments for the live view while the lab runs. A thread reads, every few
/// milliseconds, what the capture point recorded since its last read (the AF_PACKET capture, or
/// the fault relay, whose records carry each segment's fate: a dropped one is drawn ──✕ at
/// once), numbers the segments in time order as the final ladder will, hands them to the view,
/// and lets the view print every row it holds up to that moment.
///
/// A thread, not the lab's own steps: the lab also waits outside its sampling loop (the
/// TIME_WAIT countdown, the relay's waits), and the segments must show during those waits too.
/// Each read is bounded by count (`maxPerRead`) and time (`WireTracer.drain`); what is left is
/// read on the next tick. Nothing here goes into the lab's collector: the final ladder joins
/// the capture once, at the end, and each segment is printed live once.
final class LabLiveFeed: Sendable {
    enum Source: Sendable {
        case capture(WireTracer)
        case relay(FaultRelay)
    }

    private struct Reader {
        /// How many frames (or relay records) were taken from the source.
        var taken = 0
        /// Taken but not yet numbered: stamped after the last moment released.
        var waiting: [Item] = []
        var numbering = SegmentNumbering()
        /// Where the run's observation ends (`LabRun.finish`): later segments are the lab's cleanup.
        var cutNs: UInt64 = .max
    }

    private let source: Source
    private let live: LabLiveView
    private let reader = Mutex(Reader())
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<ThreadHandle?>(nil)

    /// Reads every `tickUs`; a row waits `marginNs` after its stamp, so a segment stamped before
    /// a state but queued a little later (the other core's softirq, the relay thread's record)
    /// still comes above it.
    static let tickUs: UInt32 = 5_000
    static let marginNs: UInt64 = 3_000_000
    static let maxPerRead = 4_096

    /// Starts the feed's thread; nil when it cannot start (the states are then printed as they
    /// are read, the segments only in the final ladder).
    static func start(_ source: Source, live: LabLiveView) -> LabLiveFeed? {
        let feed = LabLiveFeed(source: source, live: live)
        live.hold()
        do {
            let handle = try ThreadHandle { [feed] in feed.run() }
            feed.thread.locked { $0 = handle }
        } catch {
            live.release(upTo: .max)
            return nil
        }
        return feed
    }

    private init(source: Source, live: LabLiveView) {
        self.source = source
        self.live = live
    }

    private func run() {
        while !stopping.load(ordering: .acquiring) {
            usleep(Self.tickUs)
            read(upTo: max(MonotonicClock.now(), Self.marginNs) - Self.marginNs)
        }
    }

    /// Ends the feed at the lab's cut (`LabRun.finish`, before its cleanup resets the leftover
    /// sockets): the thread stops, the last segments up to the cut are shown, and every row held
    /// is printed. Idempotent.
    func finish(cutNs: UInt64) {
        stopping.store(true, ordering: .releasing)
        let handle = thread.locked { handle in
            defer { handle = nil }
            return handle
        }
        handle?.join()
        reader.locked { $0.cutNs = min($0.cutNs, cutNs) }
        read(upTo: cutNs)
        live.release(upTo: .max)
    }

    /// Takes what the source recorded since the last read, numbers and shows the segments
    /// stamped up to `ns` (in time order), and releases the view's rows up to `ns`.
    private func read(upTo ns: UInt64) {
        reader.locked { r in
            let (count, items) = fresh(from: r.taken)
            r.taken += count
            r.waiting += items
            let due = r.waiting.enumerated().filter { $0.element.frame.monotonicNs <= ns }
                .sorted { ($0.element.frame.monotonicNs, $0.offset) < ($1.element.frame.monotonicNs, $1.offset) }.map(\.element)
            r.waiting.removeAll { $0.frame.monotonicNs <= ns }
            for item in due where item.frame.monotonicNs <= r.cutNs {
                var segment = r.numbering.number(item.decoded, timestampNs: item.frame.monotonicNs, wallNs: item.frame.wallNs)
                segment.sender = item.sender
                segment.fault = item.fault
                live.add(segment: segment)
            }
        }
        live.release(upTo: ns)
    }

    private typealias Item = (frame: CapturedFrame, decoded: DecodedTCPSegment, sender: TraceSide?, fault: SegmentFault?)

    /// How many records were taken from `index` on, and the TCP segments among them (a frame
    /// that does not decode is counted by the final summary, not shown).
    private func fresh(from index: Int) -> (count: Int, items: [Item]) {
        switch source {
        case .capture(let wire):
            let frames = wire.frames(from: index, limit: Self.maxPerRead)
            let items = frames.compactMap { frame -> Item? in
                (try? PacketDecoder.decode(frame.bytes, link: wire.link)).map { (frame, $0, nil, nil) }
            }
            return (frames.count, items)
        case .relay(let relay):
            let records = relay.records(from: index, limit: Self.maxPerRead)
            return (records.count, records.map { ($0.frame, $0.decoded, $0.sender, $0.fault) })
        }
    }
}
