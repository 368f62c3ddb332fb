import Glibc
import SocketKit

/// `TCPWatch --wire on`: AF_PACKET captures on the interfaces that carry watched connections
/// (lo for loopback ones, the interface holding the local address otherwise), filtered in the
/// kernel to the watched ports. Memory stays bounded under any traffic: each drain reads at
/// most `drainLimit` frames per interface, the socket's receive buffer is fixed, and what the
/// kernel could not queue is counted (PACKET_STATISTICS) and reported, never buffered.
public final class WatchWire {
    private struct Capture {
        let capture: PacketCapture
        let name: String
        var frames = 0
        var reportedDrops: UInt64 = 0
    }

    public let ports: [UInt16]
    public static let drainLimit = 512
    private var captures: [Capture] = []
    private var failed: Set<String> = []
    private var numbering = SegmentNumbering()
    private var pcap: PcapngWriter?
    private let pcapPath: String?
    private let sink: TraceSink
    public private(set) var undecoded = 0

    public init(ports: [UInt16], sink: TraceSink, pcapPath: String?) {
        self.ports = ports
        self.sink = sink
        self.pcapPath = pcapPath
    }

    public var descriptors: [Int32] { captures.map(\.capture.fd) }
    public var interfaceNames: [String] { captures.map(\.name) }

    /// Opens a capture on the interface carrying `local`, once. Throws when it cannot be opened
    /// (no CAP_NET_RAW); the caller decides whether that is fatal (`on`) or a note (`auto`).
    public func cover(local: SocketAddress) throws {
        if local.addressBytes.allSatisfy({ $0 == 0 }) {
            // A wildcard listener: its connections may come in on any interface.
            for name in Self.interfacesUp() { try cover(interface: name) }
        } else if let name = Self.interface(for: local) {
            try cover(interface: name)
        }
    }

    /// Opens a capture on `name` once (at most 8 interfaces).
    public func cover(interface name: String) throws {
        guard !failed.contains(name), !captures.contains(where: { $0.name == name }), captures.count < 8 else { return }
        do {
            let index = if_nametoindex(name)
            guard index > 0 else { throw SystemCallError(call: "if_nametoindex", errno: errno, subject: name) }
            let capture = try PacketCapture(interfaceIndex: Int32(index), ports: ports, receiveBuffer: 4 << 20)
            if pcap == nil, let pcapPath {
                // One pcapng interface: the first capture's (lo for loopback watches).
                pcap = try PcapngWriter(path: pcapPath, link: capture.link, interfaceName: name, snapLength: UInt32(capture.snapLength),
                                        sectionComment: "TCPWatch capture on \(name); packet times are CLOCK_REALTIME")
            }
            captures.append(Capture(capture: capture, name: name))
            sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: 0, kind: .info,
                                 cause: "wire: capturing on \(name), ports \(ports.map(String.init).joined(separator: ","))"))
        } catch {
            failed.insert(name)
            throw error
        }
    }

    /// Reads at most `drainLimit` frames per interface; `servers` names the listening ports
    /// (segments from them are the server's). Reports new kernel drops as a warning.
    public func drain(servers: Set<UInt16>) {
        for index in captures.indices {
            var count = 0
            while count < Self.drainLimit, let frame = try? captures[index].capture.readFrame() {
                count += 1
                guard let decoded = try? PacketDecoder.decode(frame.bytes, link: captures[index].capture.link) else { undecoded += 1; continue }
                var segment = numbering.number(decoded, timestampNs: frame.monotonicNs, wallNs: frame.wallNs)
                segment.sender = servers.contains(segment.source.port) ? .server : .client
                sink.emit(TraceEvent(segment: segment, conn: 0))
                if index == 0 {
                    try? pcap?.write(frame: frame.bytes, originalLength: frame.originalLength, wallNs: frame.wallNs,
                                     comments: ["segment #\(segment.id): \(segment.label())"])
                }
            }
            captures[index].frames += count
            if let drops = try? captures[index].capture.statistics().drops, drops > captures[index].reportedDrops {
                sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: 0, kind: .warning,
                                     cause: "wire: the kernel dropped \(drops - captures[index].reportedDrops) frames on \(captures[index].name) "
                                         + "(capture buffer full; \(drops) in all): segments are missing from the trace, states are not"))
                captures[index].reportedDrops = drops
            }
        }
    }

    /// Closes everything; one line per interface.
    public func stop() -> [String] {
        let lines = captures.map { capture in
            "wire: \(capture.frames) segments captured on \(capture.name), "
                + (capture.reportedDrops == 0 ? "none dropped" : "\(capture.reportedDrops) DROPPED by the kernel")
        }
        for capture in captures { capture.capture.close() }
        captures.removeAll()
        try? pcap?.close()
        return lines
    }

    /// Interfaces that are up, from getifaddrs (each name once).
    static func interfacesUp() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var names: [String] = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            let name = String(cString: entry.pointee.ifa_name)
            if entry.pointee.ifa_flags & UInt32(IFF_UP) != 0, !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// `lo` for loopback addresses; else the interface holding the address (getifaddrs).
    static func interface(for address: SocketAddress) -> String? {
        if address.isLoopback { return "lo" }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let raw = entry.pointee.ifa_addr else { continue }
            var storage = sockaddr_storage()
            let size = raw.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
            guard raw.pointee.sa_family == sa_family_t(AF_INET) || raw.pointee.sa_family == sa_family_t(AF_INET6) else { continue }
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: size)) }
            if let candidate = SocketAddress(storage: storage), candidate.addressBytes == address.addressBytes {
                return String(cString: entry.pointee.ifa_name)
            }
        }
        return nil
    }
}
