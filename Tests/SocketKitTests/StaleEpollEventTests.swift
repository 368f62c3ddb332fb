import Glibc
import Testing
@testable import SocketKit
@testable import EchoKit

/// close() takes a socket out of an epoll interest list only when the last reference to its
/// open file goes. Any other reference keeps the registration — and its token — alive: a `dup`,
/// or a forked child between fork and exec (posix_spawn of tcpdump by the lab, of a child by a
/// test running beside this one). A level-triggered EPOLLHUP of the dead socket then arrives
/// with the token of the slot a new connection took, and closed that connection unechoed (CI,
/// 2026-12-04: "server closed connection 0 with 100 echo bytes still owed"). This holds a
/// duplicate of the server's descriptor on purpose and checks the next connection is echoed.
@Suite struct StaleEpollEventTests {
    @Test func aClosedConnectionsDuplicateDoesNotCloseTheNextConnection() throws {
        let (server, thread, port) = try LoadGeneratorTests.startServer(threads: 1)
        defer { server.stop(); #expect(thread.join(timeoutSeconds: 30), "HUNG: the server thread did not end within 30 s") }
        let address = try #require(SocketAddress(numericHost: "127.0.0.1", port: port))

        let first = try Self.connectedClient(to: address)
        defer { try? first.close() }
        #expect(try Self.exchange(first, byteCount: 10) == 10)
        let clientPort = try first.localAddress().port
        let serverFD = try #require(Self.descriptor(localPort: port, peerPort: clientPort),
                                    "the server's descriptor for the first connection was not found")
        let held = dup(serverFD)
        try #require(held >= 0, "dup: errno \(errno)")
        defer { Glibc.close(held) }

        // Our FIN, the server's FIN back (sent right before its close()), our ACK: the server's
        // socket is CLOSED yet open through `held`, so its registration reports EPOLLHUP.
        try first.shutdown(.write)
        var byte: UInt8 = 0
        let eof = try withUnsafeMutableBytes(of: &byte) { try first.receive(into: $0) }
        #expect(eof == .processed(0), "the server did not answer our FIN with its own")

        // Takes the slot the first connection had. Quiet at first: a stale event that arrives
        // after our bytes would echo them before closing, and pass by luck.
        let second = try Self.connectedClient(to: address)
        defer { try? second.close() }
        var quiet = pollfd(fd: second.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&quiet, 1, 200) == 0, "the server closed an idle new connection (revents \(quiet.revents))")
        #expect(try Self.exchange(second, byteCount: 100) == 100,
                "the next connection was not echoed: a stale event of the closed one reached it")
    }

    /// A blocking client whose receives give up after 2 s (SO_RCVTIMEO): nothing here waits longer.
    static func connectedClient(to address: SocketAddress) throws -> Socket {
        let socket = try Socket(family: AF_INET, nonBlocking: false)
        try socket.setOption(SocketOption(level: SOL_SOCKET, name: SO_RCVTIMEO, label: "SO_RCVTIMEO"),
                             timeval(tv_sec: 2, tv_usec: 0))
        _ = try socket.connect(to: address)
        return socket
    }

    /// Sends `byteCount` bytes and returns how many came back before EOF, an error or 2 s.
    static func exchange(_ socket: Socket, byteCount: Int) throws -> Int {
        let message = [UInt8](repeating: 0x61, count: byteCount)
        _ = try message.withUnsafeBytes { try socket.send($0) }
        var buffer = [UInt8](repeating: 0, count: byteCount)
        var received = 0
        while received < byteCount {
            let result = try? buffer.withUnsafeMutableBytes {
                try socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: $0[received...]))
            }
            guard case .processed(let n)? = result, n > 0 else { break }
            received += n
        }
        #expect(buffer[0..<received].allSatisfy { $0 == 0x61 })
        return received
    }

    /// This process's TCP socket from `localPort` to `peerPort` on loopback, by its addresses.
    static func descriptor(localPort: UInt16, peerPort: UInt16) -> Int32? {
        for fd: Int32 in 3..<4096 {
            var kind = stat()
            guard fstat(fd, &kind) == 0, kind.st_mode & S_IFMT == S_IFSOCK,
                  let local = address(fd, getsockname), local.port == localPort,
                  let peer = address(fd, getpeername), peer.port == peerPort else { continue }
            return fd
        }
        return nil
    }

    private static func address(
        _ fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
        }
        return result == 0 ? SocketAddress(storage: storage) : nil
    }
}
