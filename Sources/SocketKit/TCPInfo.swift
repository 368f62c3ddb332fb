import CSocketKit
import Glibc

/// The figures of the kernel's `struct tcp_info` that the trace reports.
public struct TCPInfo: Sendable, Equatable {
    /// tcpi_state, mapped to the RFC 9293 name.
    public var state: TCPState
    /// Smoothed round-trip time (tcpi_rtt), µs.
    public var rttMicros: UInt32
    /// Its variation (tcpi_rttvar), µs.
    public var rttVarMicros: UInt32
    /// Retransmissions of the current segment (tcpi_retransmits).
    public var retransmits: UInt8
    /// All retransmissions of the connection (tcpi_total_retrans).
    public var totalRetrans: UInt32
    /// Bytes the peer acknowledged (tcpi_bytes_acked).
    public var bytesAcked: UInt64
    /// Bytes received (tcpi_bytes_received).
    public var bytesReceived: UInt64
    /// Congestion window in segments (tcpi_snd_cwnd).
    public var sendCwnd: UInt32
    /// Segments in flight (tcpi_unacked).
    public var unacked: UInt32
    /// Bytes queued but not yet sent (tcpi_notsent_bytes).
    public var notSentBytes: UInt32
    /// The peer's advertised receive window (0 = the peer stopped reading); kernels ≥ 5.19.
    public var sendWindow: UInt32?

    /// From the kernel struct; fields past `length` (an older kernel) read as zero, because the
    /// buffer is zero-filled before the call, and `sendWindow` is nil when not returned.
    public init(kernel raw: CSocketKit_tcp_info, length: Int) {
        state = TCPState(kernel: raw.tcpi_state)
        rttMicros = raw.tcpi_rtt
        rttVarMicros = raw.tcpi_rttvar
        retransmits = raw.tcpi_retransmits
        totalRetrans = raw.tcpi_total_retrans
        bytesAcked = raw.tcpi_bytes_acked
        bytesReceived = raw.tcpi_bytes_received
        sendCwnd = raw.tcpi_snd_cwnd
        unacked = raw.tcpi_unacked
        notSentBytes = raw.tcpi_notsent_bytes
        let windowEnd = MemoryLayout<CSocketKit_tcp_info>.offset(of: \.tcpi_snd_wnd)! + 4
        sendWindow = length >= windowEnd ? raw.tcpi_snd_wnd : nil
    }

    /// Parses a tcp_info payload of any length (sock_diag's INET_DIAG_INFO), zero-padding a
    /// short one as ss does, so older kernels read as zeros rather than garbage.
    public init(bytes: UnsafeRawBufferPointer) {
        var raw = CSocketKit_tcp_info()
        let count = min(bytes.count, MemoryLayout<CSocketKit_tcp_info>.size)
        withUnsafeMutableBytes(of: &raw) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<count])) }
        self.init(kernel: raw, length: count)
    }
}

extension Socket {
    /// The kernel's view of this connection. Costs ~1 µs. C: `getsockopt(TCP_INFO)`.
    public func tcpInfo() throws -> TCPInfo {
        let (raw, length) = try getOption(
            SocketOption(level: Int32(IPPROTO_TCP), name: CSocketKit_TCP_INFO, label: "TCP_INFO"),
            initial: CSocketKit_tcp_info())
        return TCPInfo(kernel: raw, length: length)
    }

    /// Only the state byte: the cheapest read, for the hot path.
    public func tcpState() throws -> TCPState {
        // The kernel copies min(len, sizeof) bytes, so a 1-byte buffer returns just tcpi_state.
        let (value, _) = try getOption(
            SocketOption(level: Int32(IPPROTO_TCP), name: CSocketKit_TCP_INFO, label: "TCP_INFO"),
            initial: UInt8(0))
        return TCPState(kernel: value)
    }
}
