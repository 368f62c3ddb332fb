import CSocketKit
import Glibc

/// Which direction(s) `shutdown(2)` closes.
public enum ShutdownDirection: Sendable, CustomStringConvertible {
    case read, write, both

    var rawValue: Int32 {
        switch self {
        case .read: return Int32(SHUT_RD)
        case .write: return Int32(SHUT_WR)
        case .both: return Int32(SHUT_RDWR)
        }
    }

    /// `read` / `write` / `read and write`, as in shutdown(2)'s SHUT_* names.
    public var description: String {
        switch self {
        case .read: return "SHUT_RD"
        case .write: return "SHUT_WR"
        case .both: return "SHUT_RDWR"
        }
    }
}

extension Socket {
    /// Starts a connection. Returns true when connected at once, false when in progress
    /// (non-blocking: wait for writability, then `finishConnect()`). C: `connect(2)`.
    @discardableResult
    public func connect(to address: SocketAddress) throws -> Bool {
        try withDescriptor("connect") { fd in
            let rc = address.withSockAddr { sa, len in
                // EINTR on connect leaves the attempt running; treat it like EINPROGRESS.
                Glibc.connect(fd, sa, len)
            }
            if rc == 0 { return true }
            let code = errno
            if code == EINPROGRESS || code == EINTR { return false }
            throw SystemCallError(call: "connect", errno: code, subject: address.description)
        }
    }

    /// Reads SO_ERROR after a non-blocking connect completed and throws it as `connect`'s errno.
    public func finishConnect(to address: SocketAddress) throws {
        let code: Int32 = try getOption(.error)
        if code != 0 { throw SystemCallError(call: "connect", errno: code, subject: address.description) }
    }

    /// C: `send(2)` with MSG_NOSIGNAL, so a closed peer gives EPIPE instead of SIGPIPE.
    public func send(_ buffer: UnsafeRawBufferPointer) throws -> IOResult<Int> {
        try withDescriptor("send") { fd in
            try nonBlockingSyscall("send") { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    /// C: `recv(2)`. `.processed(0)` is the peer's FIN (end of stream).
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> IOResult<Int> {
        try withDescriptor("recv") { fd in
            try nonBlockingSyscall("recv") { Glibc.recv(fd, buffer.baseAddress, buffer.count, 0) }
        }
    }

    /// Whether input waits unread (bytes, or the peer's FIN), without taking it.
    /// C: `recv(2)` with MSG_PEEK | MSG_DONTWAIT into one byte.
    public func hasUnreadInput() throws -> Bool {
        var byte: UInt8 = 0
        let result = try withDescriptor("recv") { fd in
            try nonBlockingSyscall("recv") { Glibc.recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) }
        }
        if case .processed = result { return true }
        return false
    }

    /// C: `shutdown(2)`.
    public func shutdown(_ direction: ShutdownDirection) throws {
        _ = try withDescriptor("shutdown") { fd in
            try syscall("shutdown") { Glibc.shutdown(fd, direction.rawValue) }
        }
    }
}
