import CSocketKit
import Glibc

/// One socket as the kernel's socket table (inet_diag) reports it.
public struct SockDiagEntry: Sendable, Equatable {
    /// The socket's state in the kernel table (TIME_WAIT included).
    public var state: TCPState
    public var local: SocketAddress
    /// Unspecified for a listener.
    public var peer: SocketAddress
    /// SO_COOKIE: the same value the fd reported, for as long as the socket lives.
    public var cookie: UInt64
    /// 0 for sockets no process holds (TIME_WAIT mini-sockets, orphans after close()).
    public var inode: UInt32
    /// Which timer runs (1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe).
    public var timer: UInt8
    /// Milliseconds left on that timer: for TIME_WAIT, the time before the socket is gone.
    public var expiresMs: UInt32
    /// Recv-Q and Send-Q (bytes unread; bytes not yet acknowledged by the peer).
    public var receiveQueue: UInt32
    public var sendQueue: UInt32
    /// The owner's user id.
    public var uid: UInt32
    /// Full sockets only; TIME_WAIT and request sockets carry none.
    public var info: TCPInfo?
}

/// Queries the kernel's TCP socket table over NETLINK_SOCK_DIAG: what `ss` uses. Works
/// unprivileged for sockets of any user (the kernel hides nothing but other namespaces).
/// Exact lookups cost ~5 µs; a dump of the table ~1 ms.
/// @unchecked: one user at a time (an event loop; after close() the follower's own instance):
/// `buffer` and `sequence` are that user's. Sendable only so trackers can carry it.
public final class SockDiag: @unchecked Sendable {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var sequence: UInt32 = 0

    /// C: `socket(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG)`.
    public init() throws { fd = try openSockDiagSocket() }

    deinit { Glibc.close(fd) }

    /// The socket with exactly this 4-tuple and cookie, or nil when the kernel no longer has it.
    ///
    /// The cookie matters: a tuple lookup for a vanished connection can resolve to the
    /// listener on the same local port; the kernel then answers ESTALE, which means "gone".
    public func lookup(local: SocketAddress, peer: SocketAddress, cookie: UInt64?) throws -> SockDiagEntry? {
        var id = inet_diag_sockid()
        id.idiag_sport = local.port.bigEndian
        id.idiag_dport = peer.port.bigEndian
        withUnsafeMutableBytes(of: &id.idiag_src) { $0.copyBytes(from: local.addressBytes) }
        withUnsafeMutableBytes(of: &id.idiag_dst) { $0.copyBytes(from: peer.addressBytes) }
        let none = CSocketKit_INET_DIAG_NOCOOKIE
        id.idiag_cookie = cookie.map { (UInt32(truncatingIfNeeded: $0), UInt32(truncatingIfNeeded: $0 >> 32)) } ?? (none, none)
        let entries = try exchange(family: local.family, stateMask: 0xfff, exact: id)
        // Belt and braces: never report a socket whose tuple or cookie is not ours.
        return entries.first { entry in
            entry.local == local && entry.peer == peer && (cookie == nil || entry.cookie == cookie)
        }
    }

    /// Every TCP socket of `family` in `states` (a set of kernel state numbers) that `keep`
    /// accepts: a table of 100,000 TIME_WAIT sockets is not held in memory to find a few.
    public func dump(family: Int32, states: Set<UInt8> = Set(1...12),
                     where keep: ((SockDiagEntry) -> Bool)? = nil) throws -> [SockDiagEntry] {
        try exchange(family: family, stateMask: states.reduce(UInt32(0)) { $0 | (1 << UInt32($1)) }, keep: keep)
    }

    /// Every TCP socket of `family` whose kernel state number is in `stateMask` (bit n = state n)
    /// and that `bytecode` accepts, filtered in the kernel (`INET_DIAG_REQ_BYTECODE`, as `ss`
    /// sends for `sport = :N`). Not free even so: the kernel still walks every socket of the
    /// namespace (measured ~10 ms per IPv4+IPv6 dump with ~20,000 TIME_WAIT sockets on the host);
    /// the filter saves the copying, not the walk.
    public func dump(family: Int32, stateMask: UInt32, bytecode: [UInt8]) throws -> [SockDiagEntry] {
        try exchange(family: family, stateMask: stateMask, bytecode: bytecode)
    }

    /// One SOCK_DIAG_BY_FAMILY request (a dump, or the `exact` socket), tcp_info asked for,
    /// then its replies. C: `sendto(2)` to the kernel, `recv(2)` until NLMSG_DONE.
    private func exchange(family: Int32, stateMask: UInt32, exact: inet_diag_sockid? = nil, bytecode: [UInt8] = [],
                          keep: ((SockDiagEntry) -> Bool)? = nil) throws -> [SockDiagEntry] {
        sequence &+= 1
        var request = inet_diag_req_v2()
        request.sdiag_family = UInt8(family)
        request.sdiag_protocol = UInt8(IPPROTO_TCP)
        request.idiag_ext = UInt8(1 << (CSocketKit_INET_DIAG_INFO - 1))
        request.idiag_states = stateMask
        if let exact { request.id = exact }
        var header = nlmsghdr()
        let attributeLength = bytecode.isEmpty ? 0 : 4 + bytecode.count
        header.nlmsg_len = UInt32(MemoryLayout<nlmsghdr>.size + MemoryLayout<inet_diag_req_v2>.size + attributeLength)
        header.nlmsg_type = UInt16(CSocketKit_SOCK_DIAG_BY_FAMILY)
        header.nlmsg_flags = UInt16(NLM_F_REQUEST | (exact == nil ? NLM_F_DUMP : 0))
        header.nlmsg_seq = sequence
        var message = withUnsafeBytes(of: &header) { Array($0) } + withUnsafeBytes(of: &request) { Array($0) }
        if !bytecode.isEmpty {
            // struct rtattr { u16 rta_len; u16 rta_type; } in host order; the bytecode is 4-aligned.
            var attribute = (UInt16(attributeLength), UInt16(INET_DIAG_REQ_BYTECODE))
            message += withUnsafeBytes(of: &attribute) { Array($0) } + bytecode
        }
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        _ = try message.withUnsafeBytes { bytes in
            try withUnsafePointer(to: &kernel) { address in
                try address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try syscall("sendto") {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, sa, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
        }
        var entries: [SockDiagEntry] = []
        while true {
            let received = try buffer.withUnsafeMutableBytes { bytes in
                try syscall("recv") { recv(fd, bytes.baseAddress, bytes.count, 0) }
            }
            // ENOENT: no such socket; ESTALE: the tuple matched a different socket.
            let done = try buffer.withUnsafeBytes { bytes in
                try SockDiagReplies.parse(bytes, count: received, sequence: sequence, ending: [ENOENT, ESTALE],
                                          into: &entries, keep: keep)
            }
            if done || exact != nil { return entries }
        }
    }
}
