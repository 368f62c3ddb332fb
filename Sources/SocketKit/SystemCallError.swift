import CSocketKit
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
    /// The symbolic name (`ECONNREFUSED`), or `errno N` for one glibc does not know.
    /// C: `strerrorname_np(3)`.
    public static func name(_ code: Int32) -> String {
        CSocketKit_errno_name(code).map { String(cString: $0) } ?? "errno \(code)"
    }

    /// C: `strerror(3)`.
    public static func message(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
