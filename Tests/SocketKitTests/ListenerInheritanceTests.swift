import Glibc
import Testing
@testable import SocketKit

/// EchoServer sets TCP_NODELAY once, on its listener, instead of on every connection: Linux
/// clones each accepted socket from the listener, Nagle's setting included. This checks that
/// kernel behaviour where the tests run, both ways (set and not set).
@Suite struct ListenerInheritanceTests {
    @Test(arguments: [true, false])
    func acceptedSocketInheritsNoDelay(set: Bool) throws {
        let listener = try Socket.listening(on: #require(SocketAddress(numericHost: "127.0.0.1", port: 0)))
        defer { try? listener.close() }
        if set { try listener.setOption(.noDelay, true) }
        let client = try Socket(family: AF_INET, nonBlocking: false)
        defer { try? client.close() }
        _ = try client.connect(to: listener.localAddress())
        var accepted: Socket?
        for _ in 0..<200 where accepted == nil {   // bounded: 2 s
            if case .processed(let socket) = try listener.accept() { accepted = socket } else { usleep(10_000) }
        }
        let socket = try #require(accepted, "HUNG: accept() found no connection within 2 s")
        defer { try? socket.close() }
        #expect(try socket.getOption(.noDelay) == (set ? 1 : 0))
    }
}
