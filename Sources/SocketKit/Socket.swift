import CSocketKit
import Glibc
import Synchronization

/// An owned TCP socket descriptor: created here, closed exactly once.
///
/// Each connection socket belongs to one event loop or one client thread; a server's listener
/// is shared by its loops (accept, shutdown, the last one closes). So the descriptor is an
/// atomic: a close() on one thread and a read of `fd` on another are ordered, never a data
/// race, and two close() calls cannot both close the number (one exchange wins).
public final class Socket: Sendable {
    private let descriptor: Atomic<Int32>
    /// The descriptor, or -1 once closed.
    public var fd: Int32 { descriptor.load(ordering: .acquiring) }
    /// AF_INET or AF_INET6.
    public let family: Int32
    /// Addresses the kernel already gave when the socket was made (accept4's peer; a specific
    /// address the listener was bound to), so `localAddress()`/`peerAddress()` need no second
    /// call: getsockname + getpeername were two of a traced server's syscalls per connection.
    private let known: (local: SocketAddress?, peer: SocketAddress?)

    /// Takes ownership of `fd`; it will be closed by `close()` or, failing that, on deinit.
    public init(takingOwnershipOf fd: Int32, family: Int32) {
        descriptor = Atomic(fd)
        self.family = family
        known = (nil, nil)
    }

    /// `init(takingOwnershipOf:family:)` with the addresses already known for it.
    init(takingOwnershipOf fd: Int32, family: Int32, local: SocketAddress?, peer: SocketAddress?) {
        descriptor = Atomic(fd)
        self.family = family
        known = (local, peer)
    }

    /// Hands this socket's descriptor to a new `Socket` that knows its local address (this one
    /// reads closed afterwards): how `listening(on:)` remembers a specific bound address.
    func knowing(local: SocketAddress) -> Socket {
        Socket(takingOwnershipOf: descriptor.exchange(-1, ordering: .acquiringAndReleasing), family: family,
               local: local, peer: nil)
    }

    /// The address a listener was bound to when it is one address (not a wildcard): every
    /// connection it accepts has it as its local address.
    var boundLocal: SocketAddress? { known.local }

    /// A new TCP socket, close-on-exec, optionally non-blocking. C: `socket(2)`.
    public convenience init(family: Int32, nonBlocking: Bool = true) throws {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = try syscall("socket") { Glibc.socket(family, type, Int32(IPPROTO_TCP)) }
        self.init(takingOwnershipOf: fd, family: family)
    }

    deinit {
        // Every owner must call close(): a socket reaching deinit open is a bug (a path that
        // forgot it), so debug builds stop here, as swift-nio's BaseSocket does. Release builds
        // still close it, because leaking a descriptor is worse than closing it late.
        let fd = self.fd
        assert(fd < 0, "leak of open Socket (fd \(fd)): call close() before dropping it")
        if fd >= 0 { Glibc.close(fd) }
    }

    /// False once `close()` ran.
    public var isOpen: Bool { fd >= 0 }

    /// Closes the descriptor once (EINTR counts as closed: see `closeDescriptor`). C: `close(2)`.
    public func close() throws {
        let closing = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        guard closing >= 0 else { return }
        try closeDescriptor(closing)
    }

    /// Runs `body` with the raw descriptor, or throws EBADF if the socket was closed.
    @inline(__always)
    public func withDescriptor<R>(_ call: StaticString, _ body: (Int32) throws -> R) throws -> R {
        let fd = self.fd
        guard fd >= 0 else { throw SystemCallError(call: call.description, errno: EBADF) }
        return try body(fd)
    }

    /// C: `fcntl(F_SETFL, O_NONBLOCK)`.
    public func setNonBlocking(_ on: Bool = true) throws {
        try withDescriptor("fcntl") { fd in
            let flags = try syscall("fcntl") { fcntl(fd, F_GETFL) }
            let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
            if wanted != flags { _ = try syscall("fcntl") { fcntl(fd, F_SETFL, wanted) } }
        }
    }

    /// C: `getsockname(2)`.
    public func localAddress() throws -> SocketAddress {
        if let local = known.local, isOpen { return local }
        return try address("getsockname") { getsockname($0, $1, $2) }
    }

    /// C: `getpeername(2)`.
    public func peerAddress() throws -> SocketAddress {
        if let peer = known.peer, isOpen { return peer }
        return try address("getpeername") { getpeername($0, $1, $2) }
    }

    private func address(
        _ call: StaticString,
        _ body: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) throws -> SocketAddress {
        try withDescriptor(call) { fd in
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = try withUnsafeMutablePointer(to: &storage) { pointer in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try syscall(call) { body(fd, sa, &length) }
                }
            }
            guard let address = SocketAddress(storage: storage) else {
                throw SystemCallError(call: call.description, errno: EAFNOSUPPORT)
            }
            return address
        }
    }
}
