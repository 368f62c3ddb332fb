import CSocketKit
import Glibc
import SocketKit
import Synchronization

/// `--wire on` for the long-running EchoServer and EchoClient: a capture thread that turns each
/// captured segment into a `segment` event on the sink as it arrives (and into a pcapng block
/// when asked). States are not stamped with their segment live (a state's cause may be decided
/// only after later segments); `EchoClient --merge` joins both sides' files and stamps them.
///
/// Which side sent a segment follows from the server's port: from it, the server; to it, a
/// client.
/// @unchecked: `capture`, `numbering`, `undecoded` and `count` belong to the capture thread
/// (read by `stop` only after joining it); `stopping` is an atomic.
public final class LiveWire: @unchecked Sendable {
    private let capture: PacketCapture
    private let sink: TraceSink
    private let serverPort: UInt16
    private let pcap: PcapngWriter?
    private let stopping = Atomic<Bool>(false)
    private var thread: ThreadHandle?
    private var numbering = SegmentNumbering()           // capture thread only
    private var undecoded = 0                            // capture thread only
    private var count = 0                                // capture thread only
    public let interfaceName: String

    init(interface: String, serverPort: UInt16, sink: TraceSink, pcapPath: String?) throws {
        let index = if_nametoindex(interface)
        guard index > 0 else { throw SystemCallError(call: "if_nametoindex", errno: errno, subject: interface) }
        let capture = try PacketCapture(interfaceIndex: Int32(index), ports: [serverPort])
        self.capture = capture
        interfaceName = interface
        self.sink = sink
        self.serverPort = serverPort
        pcap = try pcapPath.map { path in
            try PcapngWriter(path: path, link: capture.link, interfaceName: interface, snapLength: UInt32(capture.snapLength),
                             sectionComment: "SocketKit live wire capture on \(interface); packet times are CLOCK_REALTIME")
        }
    }

    /// Opens the capture (see `init`) and starts its thread.
    public static func start(interface: String, serverPort: UInt16, sink: TraceSink, pcapPath: String?) throws -> LiveWire {
        let live = try LiveWire(interface: interface, serverPort: serverPort, sink: sink, pcapPath: pcapPath)
        live.thread = try ThreadHandle { [live] in live.run() }
        return live
    }

    /// Stops the thread after a last drain; returns the one-line summary. Idempotent.
    @discardableResult
    public func stop() -> String {
        stopping.store(true, ordering: .releasing)
        thread?.join()
        thread = nil
        let statistics = (try? capture.statistics()) ?? CaptureStatistics()
        capture.close()
        try? pcap?.close()
        var text = "wire: \(count) segments captured on \(interfaceName)"
        text += statistics.drops == 0 ? ", none dropped" : ", \(statistics.drops) DROPPED by the kernel (socket buffer full)"
        if undecoded > 0 { text += ", \(undecoded) not decoded" }
        return text
    }

    private func run() {
        var descriptor = pollfd(fd: capture.fd, events: Int16(POLLIN), revents: 0)
        while !stopping.load(ordering: .acquiring) {
            // 100 ms: the bound on how late stop() is noticed; frames wake it at once.
            _ = poll(&descriptor, 1, 100)
            drain()
        }
        drain()
    }

    /// Bounded by count and time (`PacketCapture.drain`): `run` polls again for the rest.
    private func drain() {
        _ = try? capture.drain { frame in
            guard let decoded = try? PacketDecoder.decode(frame.bytes, link: capture.link) else { undecoded += 1; return }
            var segment = numbering.number(decoded, timestampNs: frame.monotonicNs, wallNs: frame.wallNs)
            segment.sender = segment.source.port == serverPort ? .server : .client
            count += 1
            sink.emit(TraceEvent(segment: segment, conn: 0))
            try? pcap?.write(frame: frame.bytes, originalLength: frame.originalLength, wallNs: frame.wallNs,
                             comments: ["segment #\(segment.id): \(segment.label())"])
        }
        sink.requestFlush()
    }
}
