import CSocketKit
import Glibc

/// One socket as the kernel's socket table (inet_diag) reports it.
public struct SockDiagEntry: Sendable, Equatable {
    /// The socket's state in the kernel table (TIME_WAIT included).
    public var state: TCPState
    /// Local address and port.
    public var local: SocketAddress
    /// Peer address and port (unspecified for a listener).
    public var peer: SocketAddress
    /// SO_COOKIE: the same value the fd reported, for as long as the socket lives.
    public var cookie: UInt64
    /// 0 for sockets no process holds (TIME_WAIT mini-sockets, orphans after close()).
    public var inode: UInt32
    /// Which timer runs (1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero-window probe) and
    /// milliseconds until it fires: for TIME_WAIT, the time left before the socket is gone.
    public var timer: UInt8
    /// Milliseconds left on the active timer (TIME_WAIT's 60 s).
    public var expiresMs: UInt32
    /// Bytes waiting to be read (Recv-Q).
    public var receiveQueue: UInt32
    /// Bytes not yet acknowledged by the peer (Send-Q).
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
        var request = makeRequest(family: local.family, states: 0xfff)
        request.id.idiag_sport = local.port.bigEndian
        request.id.idiag_dport = peer.port.bigEndian
        withUnsafeMutableBytes(of: &request.id.idiag_src) { $0.copyBytes(from: local.addressBytes) }
        withUnsafeMutableBytes(of: &request.id.idiag_dst) { $0.copyBytes(from: peer.addressBytes) }
        if let cookie {
            request.id.idiag_cookie = (UInt32(truncatingIfNeeded: cookie), UInt32(truncatingIfNeeded: cookie >> 32))
        } else {
            request.id.idiag_cookie = (CSocketKit_INET_DIAG_NOCOOKIE, CSocketKit_INET_DIAG_NOCOOKIE)
        }
        let entries = try exchange(request, dump: false)
        // Belt and braces: never report a socket whose tuple or cookie is not ours.
        return entries.first { entry in
            entry.local == local && entry.peer == peer && (cookie == nil || entry.cookie == cookie)
        }
    }

    /// Every TCP socket of `family` in `states` (a set of kernel state numbers) that `keep`
    /// accepts: a table of 100,000 TIME_WAIT sockets is not held in memory to find a few.
    public func dump(family: Int32, states: Set<UInt8> = Set(1...12),
                     where keep: ((SockDiagEntry) -> Bool)? = nil) throws -> [SockDiagEntry] {
        let mask = states.reduce(UInt32(0)) { $0 | (1 << UInt32($1)) }
        return try exchange(makeRequest(family: family, states: mask), dump: true, keep: keep)
    }

    private func makeRequest(family: Int32, states: UInt32) -> inet_diag_req_v2 {
        var request = inet_diag_req_v2()
        request.sdiag_family = UInt8(family)
        request.sdiag_protocol = UInt8(IPPROTO_TCP)
        request.idiag_ext = UInt8(1 << (CSocketKit_INET_DIAG_INFO - 1))
        request.idiag_states = states
        return request
    }

    private func exchange(_ request: inet_diag_req_v2, dump: Bool, keep: ((SockDiagEntry) -> Bool)? = nil) throws -> [SockDiagEntry] {
        sequence &+= 1
        var message = (nlmsghdr(), request)
        message.0.nlmsg_len = UInt32(MemoryLayout<nlmsghdr>.size + MemoryLayout<inet_diag_req_v2>.size)
        message.0.nlmsg_type = UInt16(CSocketKit_SOCK_DIAG_BY_FAMILY)
        message.0.nlmsg_flags = UInt16(NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0))
        message.0.nlmsg_seq = sequence
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let length = Int(message.0.nlmsg_len)
        _ = try withUnsafeBytes(of: &message) { bytes in
            try withUnsafePointer(to: &kernel) { address in
                try address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try syscall("sendto") {
                        sendto(fd, bytes.baseAddress, length, 0, sa, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
        }
        var entries: [SockDiagEntry] = []
        while true {
            let received = try buffer.withUnsafeMutableBytes { bytes in
                try syscall("recv") { recv(fd, bytes.baseAddress, bytes.count, 0) }
            }
            if try parse(count: received, into: &entries, keep: keep) || !dump { return entries }
        }
    }

    /// Parses one datagram of replies; true when the exchange is complete.
    private func parse(count: Int, into entries: inout [SockDiagEntry], keep: ((SockDiagEntry) -> Bool)?) throws -> Bool {
        // ENOENT: no such socket; ESTALE: the tuple matched a different socket.
        try buffer.withUnsafeBytes { bytes in
            try SockDiagReplies.parse(bytes, count: count, sequence: sequence, ending: [ENOENT, ESTALE], into: &entries, keep: keep)
        }
    }

    static func entry(_ header: UnsafePointer<nlmsghdr>) -> SockDiagEntry? {
        let messageSize = MemoryLayout<inet_diag_msg>.size
        guard Int(header.pointee.nlmsg_len) >= CSocketKit_NLMSG_LENGTH(messageSize) else { return nil }
        guard let raw = CSocketKit_NLMSG_DATA(header) else { return nil }
        let message = raw.loadUnaligned(as: inet_diag_msg.self)
        let family = Int32(message.idiag_family)
        guard let local = address(family: family, bytes: message.id.idiag_src, port: message.id.idiag_sport),
              let peer = address(family: family, bytes: message.id.idiag_dst, port: message.id.idiag_dport)
        else { return nil }
        var entry = SockDiagEntry(
            state: TCPState(kernel: message.idiag_state), local: local, peer: peer,
            cookie: UInt64(message.id.idiag_cookie.0) | UInt64(message.id.idiag_cookie.1) << 32,
            inode: message.idiag_inode, timer: message.idiag_timer, expiresMs: message.idiag_expires,
            receiveQueue: message.idiag_rqueue, sendQueue: message.idiag_wqueue, uid: message.idiag_uid)
        // Attributes follow the message, aligned.
        var attributesLength = Int(header.pointee.nlmsg_len) - CSocketKit_NLMSG_LENGTH(messageSize)
        var attribute: UnsafePointer<rtattr>? = UnsafePointer((raw + CSocketKit_NLMSG_ALIGN(messageSize)).assumingMemoryBound(to: rtattr.self))
        while let current = attribute, CSocketKit_RTA_OK(current, attributesLength) != 0 {
            defer { attribute = CSocketKit_RTA_NEXT(current, &attributesLength) }
            if Int32(current.pointee.rta_type) == CSocketKit_INET_DIAG_INFO {
                let payload = UnsafeRawBufferPointer(start: CSocketKit_RTA_DATA(current), count: CSocketKit_RTA_PAYLOAD(current))
                entry.info = TCPInfo(bytes: payload)
            }
        }
        return entry
    }

    private static func address(family: Int32, bytes: (UInt32, UInt32, UInt32, UInt32), port: UInt16) -> SocketAddress? {
        var raw = bytes
        let data = withUnsafeBytes(of: &raw) { Array($0) }
        var storage = sockaddr_storage()
        switch family {
        case AF_INET:
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port
            withUnsafeMutableBytes(of: &a.sin_addr) { $0.copyBytes(from: data[0..<4]) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a, as: sockaddr_in.self) }
        case AF_INET6:
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port
            withUnsafeMutableBytes(of: &a.sin6_addr) { $0.copyBytes(from: data) }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a, as: sockaddr_in6.self) }
        default:
            return nil
        }
        return SocketAddress(storage: storage)
    }
}
