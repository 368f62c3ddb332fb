import CSocketKit
import Glibc

extension Socket {
    /// A listening socket bound to `address` with SO_REUSEADDR (and SO_REUSEPORT if asked),
    /// closed again if any step fails. C: `socket`, `setsockopt`, `bind`, `listen`.
    public static func listening(
        on address: SocketAddress, backlog: Int32 = 1024, reusePort: Bool = false
    ) throws -> Socket {
        let socket = try Socket(family: address.family)
        do {
            try socket.setOption(.reuseAddress, true)
            if reusePort { try socket.setOption(.reusePort, true) }
            if address.family == AF_INET6 { try socket.setOption(.ipv6Only, true) }
            try socket.bind(to: address)
            try socket.listen(backlog: backlog)
            // Bound to one address: its connections' local address, known without a call each.
            guard !address.isWildcard, let bound = try? socket.localAddress() else { return socket }
            return socket.knowing(local: bound)
        } catch let error as SystemCallError {
            try? socket.close()
            throw error.subject == nil ? error.on(address.description) : error
        }
    }

    /// C: `bind(2)`.
    public func bind(to address: SocketAddress) throws {
        try withDescriptor("bind") { fd in
            do {
                _ = try address.withSockAddr { sa, len in try syscall("bind") { Glibc.bind(fd, sa, len) } }
            } catch let error as SystemCallError {
                throw error.on(address.description)
            }
        }
    }

    /// C: `listen(2)`.
    public func listen(backlog: Int32) throws {
        _ = try withDescriptor("listen") { fd in try syscall("listen") { Glibc.listen(fd, backlog) } }
    }

    /// Accepts one connection as a non-blocking, close-on-exec socket, knowing its peer's
    /// address (accept4 writes it) and, for a listener bound to one address, its local one.
    /// C: `accept4(2)`.
    public func accept(nonBlocking: Bool = true) throws -> IOResult<Socket> {
        try withDescriptor("accept4") { fd in
            var flags = Int32(SOCK_CLOEXEC.rawValue)
            if nonBlocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let result = try withUnsafeMutablePointer(to: &storage) { pointer in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try nonBlockingSyscall("accept4", { CSocketKit_accept4(fd, sa, &length, flags) })
                }
            }
            switch result {
            case .processed(let child):
                return .processed(Socket(takingOwnershipOf: child, family: family, local: boundLocal,
                                         peer: SocketAddress(storage: storage)))
            case .wouldBlock: return .wouldBlock
            }
        }
    }
}
