import CSocketKit
import Glibc
import SocketKit

/// One frame read from the capture socket, before decoding.
public struct CapturedFrame: Sendable {
    /// The bytes kept (at most the snap length).
    public var bytes: [UInt8]
    /// The frame's length on the wire (larger than `bytes.count` when the snap length cut it).
    public var originalLength: Int
    /// Kernel receive time, CLOCK_REALTIME ns (SO_TIMESTAMPNS).
    public var wallNs: Int64
    /// The same instant on the trace's CLOCK_MONOTONIC scale (see `PacketCapture.readFrame`).
    public var monotonicNs: UInt64
    /// PACKET_HOST, PACKET_OUTGOING...: which copy this is.
    public var packetType: UInt8
}

/// Kernel counters of a capture socket since it was opened (PACKET_STATISTICS).
public struct CaptureStatistics: Sendable, Equatable {
    /// Frames that passed the filter (delivered + dropped).
    public var packets: UInt64 = 0
    /// Frames the filter accepted but the socket's receive buffer had no room for.
    public var drops: UInt64 = 0
}

/// An AF_PACKET socket on one interface, filtered in the kernel by classic BPF to our TCP ports.
///
/// Needs CAP_NET_RAW in the socket's network namespace: root on the host, or any user inside a
/// user+net namespace of their own (`unshare -Urn`), which is where unprivileged runs capture.
/// On a loopback interface every segment passes twice (PACKET_OUTGOING, then incoming as
/// PACKET_HOST); the filter keeps only the incoming copy, whose kernel timestamp is taken before
/// the receiving TCP processes it, so a state it causes is never stamped before it.
public final class PacketCapture {
    public private(set) var fd: Int32
    public let interfaceIndex: Int32
    public let link: WireLinkType
    public let isLoopback: Bool
    public let snapLength: Int
    private var buffer: [UInt8]
    private var control = [UInt8](repeating: 0, count: Int(CSocketKit_TIMESTAMP_CONTROL_SPACE) + 16)
    private var totals = CaptureStatistics()
    /// Whether the kernel was seen stamping packets on arrival (see KernelTimestampWarmUp);
    /// false means timestamps may be read times.
    public private(set) var timestampsOnArrival = false

    /// Opens the socket, attaches the filter for `ports`, then binds to the interface: no frame
    /// reaches the socket before its filter (protocol 0 receives nothing until the final bind).
    /// C: `socket(AF_PACKET)`, `setsockopt(SO_ATTACH_FILTER)`, `bind(sockaddr_ll)`.
    public init(interfaceIndex: Int32, ports: [UInt16], snapLength: Int = 262_144, receiveBuffer: Int32 = 4 << 20) throws {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = try syscall("socket(AF_PACKET)") { socket(AF_PACKET, type, 0) }
        self.fd = fd
        self.interfaceIndex = interfaceIndex
        self.snapLength = snapLength
        self.buffer = [UInt8](repeating: 0, count: snapLength)
        do {
            // Bound with protocol 0 first: learns the link type (sll_hatype) and receives nothing.
            let hardwareType = try Self.bind(fd, interfaceIndex: interfaceIndex, protocol: 0)
            switch Int32(hardwareType) {
            case 1: (link, isLoopback) = (.ethernet, false)                   // ARPHRD_ETHER
            case 772: (link, isLoopback) = (.ethernet, true)                  // ARPHRD_LOOPBACK: zero MACs
            case 0xFFFE, 519: (link, isLoopback) = (.rawIP, false)            // ARPHRD_NONE (tun), ARPHRD_RAWIP
            default: throw SystemCallError(call: "bind(AF_PACKET) link type \(hardwareType)", errno: EAFNOSUPPORT)
            }
            try attach(ports: ports)
            try setOption(SOL_SOCKET, CSocketKit_SO_TIMESTAMPNS, Int32(1), "setsockopt(SO_TIMESTAMPNS)")
            timestampsOnArrival = KernelTimestampWarmUp.ensure()
            // Best effort: the kernel caps it at net.core.rmem_max; drops are counted either way.
            _ = try? setOption(SOL_SOCKET, SO_RCVBUF, receiveBuffer, "setsockopt(SO_RCVBUF)")
            _ = try Self.bind(fd, interfaceIndex: interfaceIndex, protocol: UInt16(CSocketKit_ETH_P_ALL))
        } catch {
            Glibc.close(fd)
            self.fd = -1
            throw error
        }
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// C: `close(2)`; EINTR counts as closed (the fd is gone on Linux).
    public func close() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
    }

    /// Replaces the kernel filter, e.g. when a new port joins the trace. C: `setsockopt(SO_ATTACH_FILTER)`.
    public func attach(ports: [UInt16]) throws {
        let program = try BPFFilter.program(
            ports: ports, link: link, dropOutgoing: isLoopback, snapLength: UInt32(snapLength))
        var filters = program.map { sock_filter(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        try filters.withUnsafeMutableBufferPointer { instructions in
            var fprog = sock_fprog(len: UInt16(instructions.count), filter: instructions.baseAddress)
            _ = try syscall("setsockopt(SO_ATTACH_FILTER)") {
                setsockopt(fd, SOL_SOCKET, CSocketKit_SO_ATTACH_FILTER, &fprog, socklen_t(MemoryLayout<sock_fprog>.size))
            }
        }
    }

    /// Reads one frame, or nil when none is queued. The kernel's receive time is realtime; it is
    /// moved to CLOCK_MONOTONIC with an offset sampled around this read (realtime between two
    /// monotonic reads), so the conversion error is the sampling bracket (tens of ns) plus any
    /// realtime step since the frame arrived. C: `recvmsg(2)` with MSG_TRUNC.
    public func readFrame() throws -> CapturedFrame? {
        var address = sockaddr_ll()
        let received: IOResult<(length: Int, kernelWallNs: Int64?)> = try buffer.withUnsafeMutableBytes { data in
            try control.withUnsafeMutableBytes { controlBytes in
                try withUnsafeMutablePointer(to: &address) { name in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return try withUnsafeMutablePointer(to: &vector) { iov in
                        var message = msghdr(
                            msg_name: UnsafeMutableRawPointer(name), msg_namelen: socklen_t(MemoryLayout<sockaddr_ll>.size),
                            msg_iov: iov, msg_iovlen: 1, msg_control: controlBytes.baseAddress,
                            msg_controllen: controlBytes.count, msg_flags: 0)
                        let result = try nonBlockingSyscall("recvmsg(AF_PACKET)") { recvmsg(fd, &message, Int32(MSG_TRUNC)) }
                        guard case .processed(let length) = result else { return .wouldBlock }
                        var seconds: Int64 = 0, nanoseconds: Int64 = 0
                        let stamped = CSocketKit_timestampns(&message, &seconds, &nanoseconds) == 1
                        return .processed((length, stamped ? seconds * 1_000_000_000 + nanoseconds : nil))
                    }
                }
            }
        }
        guard case .processed(let frame) = received else { return nil }
        let offset = Self.realtimeMinusMonotonic()
        // Without a kernel timestamp (never seen with SO_TIMESTAMPNS on), the read time stands in.
        let wall = frame.kernelWallNs ?? (Int64(MonotonicClock.now()) + offset)
        return CapturedFrame(
            bytes: Array(buffer[0..<min(frame.length, buffer.count)]), originalLength: frame.length, wallNs: wall,
            monotonicNs: UInt64(clamping: wall - offset), packetType: address.sll_pkttype)
    }

    /// Reads queued frames into `body`: until none is queued, `maxFrames` were read, or
    /// `maxNs` passed, whichever comes first. Never "until empty" alone: under traffic that
    /// keeps coming (a busy host), the queue may never be empty. Returns how many were read.
    @discardableResult
    public func drain(maxFrames: Int = PacketCapture.drainFrames, maxNs: UInt64 = PacketCapture.drainNs,
                      _ body: (CapturedFrame) -> Void) throws -> Int {
        let deadline = MonotonicClock.now() + maxNs
        var count = 0
        while count < maxFrames {
            guard let frame = try readFrame() else { break }
            body(frame)
            count += 1
            // The clock every 64 frames: a read costs ~1 µs, a clock read ~20 ns.
            if count & 63 == 0 && MonotonicClock.now() >= deadline { break }
        }
        return count
    }

    /// Default bounds of one `drain`: what a 4 MiB socket buffer holds of small segments, and
    /// 50 ms (the caller's loop comes back for the rest).
    public static let drainFrames = 8_192
    public static let drainNs: UInt64 = 50_000_000

    /// CLOCK_REALTIME − CLOCK_MONOTONIC now, from a realtime read bracketed by two monotonic ones.
    /// The narrowest of up to 5 brackets: a thread preempted between the reads (seen on a host at
    /// load average 15) widened one bracket to ~7 ms, and segments were then dated after the
    /// kernel states they caused. A bracket under 4 µs is taken at once (~60 ns on a quiet host).
    static func realtimeMinusMonotonic() -> Int64 {
        var best: (width: Int64, offset: Int64) = (.max, 0)
        for _ in 0..<5 {
            let before = Int64(MonotonicClock.now())
            let wall = MonotonicClock.wallNow()
            let after = Int64(MonotonicClock.now())
            let width = after - before
            if width < best.width { best = (width, wall - (before + width / 2)) }
            if width < 4_000 { break }
        }
        return best.offset
    }

    /// Cumulative counters. The kernel resets PACKET_STATISTICS on every read, so they are summed
    /// here. C: `getsockopt(PACKET_STATISTICS)`.
    public func statistics() throws -> CaptureStatistics {
        var stats = tpacket_stats()
        var length = socklen_t(MemoryLayout<tpacket_stats>.size)
        _ = try syscall("getsockopt(PACKET_STATISTICS)") {
            getsockopt(fd, CSocketKit_SOL_PACKET, CSocketKit_PACKET_STATISTICS, &stats, &length)
        }
        totals.packets += UInt64(stats.tp_packets)
        totals.drops += UInt64(stats.tp_drops)
        return totals
    }

    private func setOption(_ level: Int32, _ name: Int32, _ value: Int32, _ call: StaticString) throws {
        var value = value
        _ = try syscall(call) { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// Binds to `interfaceIndex` for `protocol` (host order) and returns the interface's ARPHRD type.
    private static func bind(_ fd: Int32, interfaceIndex: Int32, protocol proto: UInt16) throws -> UInt16 {
        var address = sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_protocol = proto.bigEndian
        address.sll_ifindex = interfaceIndex
        let size = socklen_t(MemoryLayout<sockaddr_ll>.size)
        _ = try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try syscall("bind(AF_PACKET)") { Glibc.bind(fd, sa, size) }
            }
        }
        var bound = sockaddr_ll()
        var length = size
        _ = try withUnsafeMutablePointer(to: &bound) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try syscall("getsockname(AF_PACKET)") { getsockname(fd, sa, &length) }
            }
        }
        return bound.sll_hatype
    }
}
