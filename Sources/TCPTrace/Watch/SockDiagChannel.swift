import CSocketKit
import Glibc
import SocketKit

/// TCPWatch's NETLINK_SOCK_DIAG socket for destroy notifications: the multicast groups
/// `SKNLGRP_INET_TCP_DESTROY`/`SKNLGRP_INET6_TCP_DESTROY` (what `ss -E` prints), filtered by a
/// classic BPF program before the kernel queues them, read in bounded drains. Works
/// unprivileged. Dumps and lookups are `SockDiag`'s (SocketKit).
/// Single owner (one watch thread): not Sendable.
public final class SockDiagChannel {
    public let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    /// C: `socket(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG)`.
    public init() throws { fd = try openSockDiagSocket() }

    deinit { Glibc.close(fd) }

    /// Joins multicast groups (SKNLGRP_*). C: `bind(sockaddr_nl)`,
    /// `setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP)`.
    public func subscribe(groups: [Int32]) throws {
        // Measured: an unbound socket joins the groups without error but never receives a
        // broadcast; binding first (port id chosen by the kernel) makes it a listener.
        var local = sockaddr_nl()
        local.nl_family = sa_family_t(AF_NETLINK)
        _ = try withUnsafePointer(to: &local) { address in
            try address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try syscall("bind") { bind(fd, sa, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
            }
        }
        for group in groups {
            var value = group
            _ = try syscall("setsockopt(NETLINK_ADD_MEMBERSHIP)") {
                setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &value, socklen_t(MemoryLayout<Int32>.size))
            }
        }
    }

    /// The destroy groups for IPv4 and IPv6 TCP sockets.
    public static let tcpDestroyGroups: [Int32] = [Int32(SKNLGRP_INET_TCP_DESTROY.rawValue), Int32(SKNLGRP_INET6_TCP_DESTROY.rawValue)]

    /// A classic BPF program run on each notification before it is queued (the datagram starts
    /// with the nlmsghdr). C: `setsockopt(SO_ATTACH_FILTER)`.
    public func attachFilter(_ program: [sock_filter]) throws {
        var instructions = program
        try instructions.withUnsafeMutableBufferPointer { buffer in
            var fprog = sock_fprog(len: UInt16(buffer.count), filter: buffer.baseAddress)
            _ = try syscall("setsockopt(SO_ATTACH_FILTER)") {
                setsockopt(fd, SOL_SOCKET, CSocketKit_SO_ATTACH_FILTER, &fprog, socklen_t(MemoryLayout<sock_fprog>.size))
            }
        }
    }

    /// Asks for a larger receive queue (capped by net.core.rmem_max unprivileged); returns what
    /// the kernel granted. C: `setsockopt(SO_RCVBUF)`, `getsockopt(SO_RCVBUF)`.
    @discardableResult
    public func setReceiveBuffer(bytes: Int32) throws -> Int32 {
        var value = bytes
        _ = try syscall("setsockopt(SO_RCVBUF)") {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<Int32>.size))
        }
        var granted: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try syscall("getsockopt(SO_RCVBUF)") { getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &length) }
        return granted
    }

    /// What `receiveNotifications` read.
    public struct Notifications: Sendable {
        public var entries: [SockDiagEntry] = []
        /// The kernel reported ENOBUFS: its queue overflowed and notifications were lost.
        public var overrun = false
        /// Datagrams read.
        public var datagrams = 0
    }

    /// Reads queued notifications without blocking, at most `limit` datagrams (a bounded drain:
    /// the caller polls again). C: `recv(MSG_DONTWAIT)`.
    public func receiveNotifications(limit: Int) throws -> Notifications {
        var result = Notifications()
        while result.datagrams < limit {
            let received = buffer.withUnsafeMutableBytes { bytes in recv(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT)) }
            if received < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { break }
                // The kernel dropped notifications because our queue was full; the socket stays usable.
                if code == ENOBUFS { result.overrun = true; continue }
                throw SystemCallError(call: "recv", errno: code, subject: "sock_diag destroy notifications")
            }
            result.datagrams += 1
            // Notifications carry sequence number 0: no sequence filter.
            _ = try buffer.withUnsafeBytes { bytes in
                try SockDiagReplies.parse(bytes, count: received, sequence: nil, ending: [], into: &result.entries)
            }
        }
        return result
    }
}
