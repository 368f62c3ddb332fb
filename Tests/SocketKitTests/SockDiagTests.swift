import Glibc
import TestSupport
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct SockDiagTests {
    /// A connected pair over loopback: (client, accepted server side, listener).
    static func connectedPair() throws -> (Socket, Socket, Socket) {
        let listener = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        let client = try Socket(family: AF_INET, nonBlocking: false)
        try client.connect(to: listener.localAddress())
        var accepted: Socket?
        for _ in 0..<1000 {
            if case .processed(let s) = try listener.accept() { accepted = s; break }
            usleep(1000)
        }
        return (client, try #require(accepted), listener)
    }

    @Test func lookup_findsEstablishedSocketWithItsCookie() throws {
        let (client, server, listener) = try Self.connectedPair()
        defer { try? client.close(); try? server.close(); try? listener.close() }
        let diag = try SockDiag()
        let entry = try #require(try diag.lookup(local: client.localAddress(), peer: client.peerAddress(), cookie: client.cookie()))
        #expect(entry.state == .established)
        #expect(entry.cookie == (try client.cookie()))
        #expect(entry.inode != 0)
        #expect(entry.info?.state == .established)
    }

    @Test(.needsTimeWaitRoom) func lookup_afterActiveClose_findsTimeWaitWithTimer() throws {
        let (client, server, listener) = try Self.connectedPair()
        defer { try? listener.close() }
        let local = try client.localAddress(), peer = try client.peerAddress(), cookie = try client.cookie()
        try client.close()
        try server.close()
        let diag = try SockDiag()
        var entry: SockDiagEntry?
        for _ in 0..<200 {
            entry = try diag.lookup(local: local, peer: peer, cookie: cookie)
            if entry?.state == .timeWait { break }
            usleep(1000)
        }
        let found = try #require(entry)
        #expect(found.state == .timeWait)
        #expect(found.inode == 0)
        #expect(found.expiresMs > 50_000 && found.expiresMs <= 60_000)
        #expect(found.cookie == cookie)
    }

    @Test func lookup_ofGoneTuple_neverReturnsTheListener() throws {
        let (client, server, listener) = try Self.connectedPair()
        defer { try? listener.close() }
        // Ask from the server's side (local port = the listener's port) with the server
        // socket's cookie after it is gone: the tuple resolves to the listener, which must not
        // be reported as our socket.
        let local = try server.localAddress(), peer = try server.peerAddress(), cookie = try server.cookie()
        try client.setAbortiveClose()
        try client.close()   // RST: no TIME_WAIT on either side
        try server.close()
        let diag = try SockDiag()
        #expect(waitFor(timeout: 5) { (try? diag.lookup(local: local, peer: peer, cookie: cookie)) == .some(nil) })
    }

    @Test func dump_listsOurListener() throws {
        let listener = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        defer { try? listener.close() }
        let port = try listener.localAddress().port
        let entries = try SockDiag().dump(family: AF_INET, states: [10])
        #expect(entries.contains { $0.local.port == port && $0.state == .listen })
    }
}
