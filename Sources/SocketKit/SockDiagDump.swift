import CSocketKit
import Glibc

/// A NETLINK_SOCK_DIAG socket for what `SockDiag` does not ask: dumps filtered in the kernel
/// (a state mask plus inet_diag bytecode, as `ss` sends for `sport = :N`), and the destroy
/// notifications of the multicast groups `SKNLGRP_INET_TCP_DESTROY`/`SKNLGRP_INET6_TCP_DESTROY`
/// (what `ss -E` prints). Both work unprivileged.
///
/// A dump is not free even when filtered: the kernel walks every socket of the namespace and
/// runs the bytecode on each (measured: ~10 ms of kernel time per IPv4+IPv6 dump with ~20,000
/// TIME_WAIT sockets on the host). The filter saves the copying, not the walk.
/// Single owner (one watch thread): not Sendable.
public final class SockDiagChannel {
    public let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var sequence: UInt32 = 0

    /// C: `socket(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG)`.
    public init() throws { fd = try openSockDiagSocket() }

    deinit { Glibc.close(fd) }

    /// Every TCP socket of `family` whose kernel state number is in `stateMask` (bit n = state n)
    /// and that `bytecode` accepts (empty: no filter). Asks for tcp_info too.
    /// C: `sendto(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP)` with `INET_DIAG_REQ_BYTECODE`, then `recv`.
    public func dump(family: Int32, stateMask: UInt32, bytecode: [UInt8]) throws -> [SockDiagEntry] {
        sequence &+= 1
        var request = inet_diag_req_v2()
        request.sdiag_family = UInt8(family)
        request.sdiag_protocol = UInt8(IPPROTO_TCP)
        request.idiag_ext = UInt8(1 << (CSocketKit_INET_DIAG_INFO - 1))
        request.idiag_states = stateMask
        var header = nlmsghdr()
        let attributeLength = bytecode.isEmpty ? 0 : 4 + bytecode.count
        header.nlmsg_len = UInt32(MemoryLayout<nlmsghdr>.size + MemoryLayout<inet_diag_req_v2>.size + attributeLength)
        header.nlmsg_type = UInt16(CSocketKit_SOCK_DIAG_BY_FAMILY)
        header.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
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
            if try parse(count: received, sequence: sequence, into: &entries) { return entries }
        }
    }

    // MARK: Destroy notifications

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
            _ = try parse(count: received, sequence: nil, into: &result.entries)
        }
        return result
    }

    /// Parses one datagram; true when a dump is complete. `sequence` nil: notifications (seq 0).
    private func parse(count: Int, sequence: UInt32?, into entries: inout [SockDiagEntry]) throws -> Bool {
        try buffer.withUnsafeBytes { bytes in
            try SockDiagReplies.parse(bytes, count: count, sequence: sequence, ending: [], into: &entries)
        }
    }
}
