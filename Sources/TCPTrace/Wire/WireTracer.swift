import CSocketKit
import Glibc
import SocketKit
import Synchronization

/// `--wire auto|on|off`.
public enum WireMode: String, Sendable, CaseIterable {
    case auto, on, off
}

/// What a finished capture produced, joined with the run's events.
public struct WireRun: Sendable {
    /// The run's events with `segment` events added and states stamped with their segment.
    public var events: [TraceEvent]
    public var segments: [WireSegment]
    public var statistics: CaptureStatistics
    /// Frames the filter passed that did not decode as TCP (never expected on lo).
    public var undecoded: Int
    /// Why the capture was cut short (`cut(atNs:reason:)`), and the flags of each segment
    /// captured after the cut, which the run leaves out.
    public var cutReason: String? = nil
    public var afterCut: [TCPFlags] = []
    /// What the capture point did beyond capturing (the fault relay's faults and cost).
    public var captureNote: String? = nil

    /// One line: what was captured, what was lost, and where the capture was cut.
    public var summary: String {
        var text = "Wire: \(segments.count) segments captured"
        text += statistics.drops == 0 ? (captureNote == nil ? ", none dropped" : ", none missed by the capture")
            : ", \(statistics.drops) DROPPED by the kernel (socket buffer full)"
        if undecoded > 0 { text += ", \(undecoded) not decoded" }
        if let captureNote { text += "; " + captureNote }
        if let cutReason {
            text += "; capture cut \(cutReason)"
            if !afterCut.isEmpty {
                text += " (not shown: \(afterCut.count) later segment\(afterCut.count == 1 ? "" : "s"), "
                    + afterCut.map(\.description).joined(separator: ", ") + ")"
            }
        }
        return text
    }
}

/// One capture for one run (demo, scenario): an AF_PACKET socket on the interface that carries
/// the connections, filtered to the ports `watch` names. Frames queue in the socket buffer
/// (the kernel stamps each on arrival) and are read by `drain()`, during the run by whoever has
/// a moment, and at the end by `finish`.
/// @unchecked: the capture (not Sendable: one reader at a time) is read only inside `state`'s
/// lock; everything else is immutable.
public final class WireTracer: @unchecked Sendable {
    private let capture: PacketCapture
    private let state = Mutex(Captured())
    public let interfaceName: String

    struct Captured: Sendable {
        var ports: Set<UInt16> = []
        var frames: [CapturedFrame] = []
        var cut: (ns: UInt64, reason: String)?
    }

    /// Opens the capture on `interface` (default `lo`). Throws EPERM without CAP_NET_RAW.
    public init(interface: String = "lo", ports: [UInt16] = []) throws {
        let index = if_nametoindex(interface)
        guard index > 0 else { throw SystemCallError(call: "if_nametoindex", errno: errno, subject: interface) }
        interfaceName = interface
        // Until a port is watched, the filter names port 0, which no TCP segment carries.
        capture = try PacketCapture(interfaceIndex: Int32(index), ports: ports.isEmpty ? [0] : ports)
        state.locked { $0.ports = Set(ports) }
    }

    /// Whether this process may capture here (CAP_NET_RAW in its network namespace): the
    /// answer, or the one-line reason why not.
    public static func probe() -> String? {
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd >= 0 { Glibc.close(fd); return nil }
        let code = errno
        return code == EPERM || code == EACCES
            ? "capturing needs CAP_NET_RAW: root, or a user+net namespace of our own"
            : "socket(AF_PACKET): \(Errno.name(code))"
    }

    /// Adds a port to the kernel filter (a listener, a bound socket, a connect() target).
    /// Segments to the port before this call are not captured. C: `setsockopt(SO_ATTACH_FILTER)`.
    public func watch(port: UInt16) {
        guard port != 0 else { return }
        state.locked { captured in
            guard captured.ports.insert(port).inserted, captured.ports.count <= BPFFilter.maxPorts else { return }
            read(into: &captured)        // frames already queued passed the old filter: keep them
            // A failure leaves the old filter, which still captures the ports it had.
            try? capture.attach(ports: Array(captured.ports))
        }
    }

    /// Reads queued frames (non-blocking), bounded by count and time (`PacketCapture.drain`).
    /// The run keeps at most `maxFrames`: past that the capture is cut (said in the summary),
    /// so memory stays bounded whatever the traffic on the watched ports. Any thread may call
    /// it (the live lab's reader does, while the lab's thread adds ports).
    public func drain() {
        state.locked { read(into: &$0) }
    }

    /// Drains, then returns the frames kept from the `index`-th on (in the order read), at most
    /// `limit` of them: the live lab's reader takes each frame once, by its index.
    public func frames(from index: Int, limit: Int) -> [CapturedFrame] {
        state.locked { captured in
            read(into: &captured)
            return Array(captured.frames.dropFirst(index).prefix(limit))
        }
    }

    /// The link type the frames carry (how to decode them).
    public var link: WireLinkType { capture.link }

    /// Inside `state`'s lock: the capture has one reader at a time.
    private func read(into captured: inout Captured) {
        var batch: [CapturedFrame] = []
        _ = try? capture.drain { batch.append($0) }
        guard !batch.isEmpty else { return }
        let room = max(0, Self.maxFrames - captured.frames.count)
        captured.frames += batch.prefix(room)
        if batch.count > room, captured.cut == nil, let last = captured.frames.last {
            captured.cut = (last.monotonicNs, "after \(Self.maxFrames) frames, the capture's memory bound")
        }
    }

    /// Frames one run keeps (a demo or scenario has a few dozen).
    static let maxFrames = 100_000

    /// Ends the run's capture at `ns` (CLOCK_MONOTONIC): segments the kernel stamped later are
    /// left out of the run, the pcapng and the checks, and the summary says so with `reason`
    /// ("when the lab stopped watching"). The lab's cleanup resets come after this.
    public func cut(atNs ns: UInt64, reason: String) {
        drain()
        state.locked { if $0.cut == nil { $0.cut = (ns, reason) } }
    }

    /// Drains, decodes, numbers and joins the segments with `events`; closes the capture.
    /// Writes `pcapPath` when given (states as packet comments).
    public func finish(events: [TraceEvent], pcapPath: String? = nil) throws -> WireRun {
        drain()
        let statistics = (try? capture.statistics()) ?? CaptureStatistics()
        let link = capture.link
        capture.close()
        let (all, cut) = state.locked { ($0.frames, $0.cut) }
        let frames = all.sorted { $0.monotonicNs < $1.monotonicNs }
        let (run, kept, segments) = WireRun.assemble(frames: frames, faults: nil, link: link, cut: cut, statistics: statistics,
                                                     events: events)
        let joined = run.events
        if let pcapPath {
            try WirePcapExport.write(path: pcapPath, frames: kept, segments: segments, events: joined,
                                     link: link, interfaceName: interfaceName, snapLength: UInt32(capture.snapLength))
        }
        return run
    }
}

/// `--pcap FILE`: the captured frames as pcapng, each with the state transitions it caused.
public enum WirePcapExport {
    public static func write(path: String, frames: [CapturedFrame], segments: [WireSegment], events: [TraceEvent],
                             link: WireLinkType, interfaceName: String, snapLength: UInt32) throws {
        var comments: [Int: [String]] = [:]
        for event in events where event.kind == .state {
            guard let id = event.segmentID else { continue }
            comments[id, default: []].append(
                "\(event.side.rawValue) #\(event.conn) \(event.from?.name ?? "—") → \(event.to?.name ?? "?") (\(event.source?.rawValue ?? "?"))")
        }
        let offset = MonotonicClock.wallNow() - Int64(MonotonicClock.now())
        let writer = try PcapngWriter(
            path: path, link: link, interfaceName: interfaceName, snapLength: snapLength,
            sectionComment: "SocketKit wire capture; packet times are CLOCK_REALTIME; trace ts_ns (CLOCK_MONOTONIC) = time - \(offset) ns")
        for (frame, segment) in zip(frames, segments) {
            var lines = ["segment #\(segment.id): \(segment.label())"]
            if let fault = segment.fault { lines.append(fault.note) }
            lines += comments[segment.id] ?? []
            try writer.write(frame: frame.bytes, originalLength: frame.originalLength, wallNs: frame.wallNs, comments: lines)
        }
        try writer.close()
    }
}
