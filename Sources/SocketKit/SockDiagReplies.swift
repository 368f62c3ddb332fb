import CSocketKit
import Glibc

/// Reading one datagram of sock_diag replies: shared by `SockDiag` (lookups, dumps) and
/// `SockDiagChannel` (filtered dumps, destroy notifications).
enum SockDiagReplies {
    /// Appends the entries of the datagram's messages to `entries` (those `keep` accepts);
    /// true when the exchange is complete (NLMSG_DONE, or an error in `ending`).
    /// - Parameters:
    ///   - sequence: only messages with this sequence number; nil for notifications (seq 0).
    ///   - ending: error codes that mean "no answer" rather than a failure (ENOENT for a
    ///     lookup of a socket that is gone).
    static func parse(_ bytes: UnsafeRawBufferPointer, count: Int, sequence: UInt32?, ending: Set<Int32>,
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
                if let entry = SockDiag.entry(current), keep?(entry) ?? true { entries.append(entry) }
            }
        }
        return false
    }
}

/// The NETLINK_SOCK_DIAG socket both `SockDiag` (lookups) and `SockDiagChannel` (dumps,
/// destroy notifications) talk through. C: `socket(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG)`.
func openSockDiagSocket() throws -> Int32 {
    try syscall("socket") {
        Glibc.socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), CSocketKit_NETLINK_SOCK_DIAG)
    }
}
