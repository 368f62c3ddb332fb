import CSocketKit
import Glibc

/// A socket option with its level, name and C spelling (for error messages).
public struct SocketOption: Sendable {
    /// SOL_SOCKET, IPPROTO_TCP...
    public let level: Int32
    /// SO_*, TCP_*...
    public let name: Int32
    /// The C spelling, for error messages (`setsockopt(SO_LINGER)`).
    public let label: String

    public static let reuseAddress = SocketOption(level: SOL_SOCKET, name: SO_REUSEADDR, label: "SO_REUSEADDR")
    public static let reusePort = SocketOption(level: SOL_SOCKET, name: SO_REUSEPORT, label: "SO_REUSEPORT")
    public static let error = SocketOption(level: SOL_SOCKET, name: SO_ERROR, label: "SO_ERROR")
    public static let cookie = SocketOption(level: SOL_SOCKET, name: CSocketKit_SO_COOKIE, label: "SO_COOKIE")
    public static let noDelay = SocketOption(level: Int32(IPPROTO_TCP), name: TCP_NODELAY, label: "TCP_NODELAY")
    public static let cork = SocketOption(level: Int32(IPPROTO_TCP), name: TCP_CORK, label: "TCP_CORK")
    public static let ipv6Only = SocketOption(level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, label: "IPV6_V6ONLY")
    public static let linger = SocketOption(level: SOL_SOCKET, name: SO_LINGER, label: "SO_LINGER")
}

extension Socket {
    /// C: `setsockopt(2)` with a plain value (int, linger...).
    public func setOption<T: BitwiseCopyable>(_ option: SocketOption, _ value: T) throws {
        try withDescriptor("setsockopt") { fd in
            var value = value
            do {
                _ = try syscall("setsockopt") {
                    setsockopt(fd, option.level, option.name, &value, socklen_t(MemoryLayout<T>.size))
                }
            } catch let error as SystemCallError {
                throw error.on(option.label)
            }
        }
    }

    /// Booleans travel as C ints.
    public func setOption(_ option: SocketOption, _ on: Bool) throws {
        try setOption(option, Int32(on ? 1 : 0))
    }

    /// C: `getsockopt(2)` into a zero-filled value; returns it with the length the kernel wrote.
    public func getOption<T: BitwiseCopyable>(_ option: SocketOption, initial: T) throws -> (T, Int) {
        try withDescriptor("getsockopt") { fd in
            var value = initial
            var length = socklen_t(MemoryLayout<T>.size)
            do {
                _ = try syscall("getsockopt") { getsockopt(fd, option.level, option.name, &value, &length) }
            } catch let error as SystemCallError {
                throw error.on(option.label)
            }
            return (value, Int(length))
        }
    }

    /// An int-valued option. C: `getsockopt(2)`.
    public func getOption(_ option: SocketOption) throws -> Int32 {
        try getOption(option, initial: Int32(0)).0
    }

    /// The kernel's 64-bit socket cookie: stable for the socket's whole life, including its
    /// TIME_WAIT mini-socket, so sock_diag lookups can tell it from a reused 4-tuple.
    public func cookie() throws -> UInt64 {
        try getOption(.cookie, initial: UInt64(0)).0
    }

    /// SO_LINGER {1, 0}: close() then sends RST and skips TIME_WAIT (abortive close).
    public func setAbortiveClose() throws {
        try setOption(.linger, linger(l_onoff: 1, l_linger: 0))
    }
}
