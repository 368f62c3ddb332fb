import CSocketKit
import Glibc

/// Reading one datagram of sock_diag replies: shared by `SockDiag` (lookups, dumps) and
/// TCPWatch's `SockDiagChannel` (destroy notifications, TCPTrace/Watch).
package enum SockDiagReplies {
    /// Appends the entries of the datagram's messages to `entries` (those `keep` accepts);
    /// true when the exchange is complete (NLMSG_DONE, or an error in `ending`).
    /// - Parameters:
    ///   - sequence: only messages with this sequence number; nil for notifications (seq 0).
    ///   - ending: error codes that mean "no answer" rather than a failure (ENOENT for a
    ///     lookup of a socket that is gone).
    package static func parse(_ bytes: UnsafeRawBufferPointer, count: Int, sequence: UInt32?, ending: Set<Int32>,
                      into entries: inout [SockDiagEntry], keep: ((SockDiagEntry) -> Bool)? = nil) throws -> Bool {
        var remaining = count
        guard let base = bytes.baseAddress, count >= MemoryLayout<nlmsghdr>.size else { return false }
        var header: UnsafePointer<nlmsghdr>? = UnsafePointer(base.assumingMemoryBound(to: nlmsghdr.self))
        while let current = header, CSocketKit_NLMSG_OK(current, remaining) != 0 {
            defer { header = CSocketKit_NLMSG_NEXT(current, &remaining) }
            if let sequence, current.pointee.nlmsg_seq != sequence { continue }
            switch Int32(current.pointee.nlmsg_type) {
            case NLMSG_DONE:
                return true
            case NLMSG_ERROR:
                // A truncated error message reads as "no answer", not a crash.
                guard Int(current.pointee.nlmsg_len) >= CSocketKit_NLMSG_LENGTH(MemoryLayout<Int32>.size),
                      let payload = CSocketKit_NLMSG_DATA(current) else { return true }
                let code = -payload.loadUnaligned(as: Int32.self)
                if code == 0 || ending.contains(code) { return true }
                // EINVAL on a dump with bytecode is the kernel's audit refusing the filter.
                throw SystemCallError(call: "sock_diag", errno: code)
            default:
                if let entry = entry(current), keep?(entry) ?? true { entries.append(entry) }
            }
        }
        return false
    }

    /// One `inet_diag_msg` and its INET_DIAG_INFO attribute; nil when truncated or not IP.
    static func entry(_ header: UnsafePointer<nlmsghdr>) -> SockDiagEntry? {
        let messageSize = MemoryLayout<inet_diag_msg>.size
        guard Int(header.pointee.nlmsg_len) >= CSocketKit_NLMSG_LENGTH(messageSize) else { return nil }
        guard let raw = CSocketKit_NLMSG_DATA(header) else { return nil }
        let message = raw.loadUnaligned(as: inet_diag_msg.self)
        let family = Int32(message.idiag_family)
        guard let local = SocketAddress(family: family, inetDiag: message.id.idiag_src, port: message.id.idiag_sport),
              let peer = SocketAddress(family: family, inetDiag: message.id.idiag_dst, port: message.id.idiag_dport)
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
}

/// The NETLINK_SOCK_DIAG socket both `SockDiag` (lookups, dumps) and `SockDiagChannel` (destroy
/// notifications) talk through. C: `socket(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG)`.
package func openSockDiagSocket() throws -> Int32 {
    try syscall("socket") {
        Glibc.socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), CSocketKit_NETLINK_SOCK_DIAG)
    }
}
