import Glibc

/// A failed system call: the C call's name (as in `strace` and the man pages), what it was
/// applied to, and the raw errno so callers can still `switch` on it.
///
/// Reads like `connect(127.0.0.1:7007): Connection refused (ECONNREFUSED)`.
public struct SystemCallError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The C call as spelled in its man page (`connect`, `epoll_ctl`).
    public let call: String
    /// The raw errno, for `switch`ing on (ECONNREFUSED...).
    public let errno: Int32
    /// What the call was applied to (an address, an option name), shown in parentheses.
    public var subject: String?

    /// `subject` names what the call was about (an address, a path).
    public init(call: String, errno: Int32, subject: String? = nil) {
        self.call = call
        self.errno = errno
        self.subject = subject
    }

    /// The same error, naming the object the call was applied to.
    public func on(_ subject: String) -> SystemCallError {
        var copy = self
        copy.subject = subject
        return copy
    }

    /// `connect(127.0.0.1:7007): Connection refused (ECONNREFUSED)`.
    public var description: String {
        let target = subject.map { "(\($0))" } ?? ""
        return "\(call)\(target): \(Errno.message(errno)) (\(Errno.name(errno)))"
    }
}

/// errno numbers to their symbolic names and strerror text.
public enum Errno {
    /// The symbolic name (`ECONNREFUSED`), or `errno N` for one not in the table.
    public static func name(_ code: Int32) -> String {
        names[code] ?? "errno \(code)"
    }

    /// strerror(3) text.
    public static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    // Linux x86_64/aarch64 numbering (asm-generic/errno*.h).
    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", EBADF: "EBADF",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY",
        EEXIST: "EEXIST", ENODEV: "ENODEV", EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE",
        ENOSPC: "ENOSPC", EPIPE: "EPIPE", ERANGE: "ERANGE", ENOSYS: "ENOSYS", ENOTSOCK: "ENOTSOCK",
        EDESTADDRREQ: "EDESTADDRREQ", EMSGSIZE: "EMSGSIZE", EPROTOTYPE: "EPROTOTYPE",
        ENOPROTOOPT: "ENOPROTOOPT", EPROTONOSUPPORT: "EPROTONOSUPPORT", EOPNOTSUPP: "EOPNOTSUPP",
        EAFNOSUPPORT: "EAFNOSUPPORT", EADDRINUSE: "EADDRINUSE", EADDRNOTAVAIL: "EADDRNOTAVAIL",
        ENETDOWN: "ENETDOWN", ENETUNREACH: "ENETUNREACH", ENETRESET: "ENETRESET",
        ECONNABORTED: "ECONNABORTED", ECONNRESET: "ECONNRESET", ENOBUFS: "ENOBUFS",
        EISCONN: "EISCONN", ENOTCONN: "ENOTCONN", ESHUTDOWN: "ESHUTDOWN", ETIMEDOUT: "ETIMEDOUT",
        ECONNREFUSED: "ECONNREFUSED", EHOSTDOWN: "EHOSTDOWN", EHOSTUNREACH: "EHOSTUNREACH",
        EALREADY: "EALREADY", EINPROGRESS: "EINPROGRESS", ESTALE: "ESTALE"
    ]
}
