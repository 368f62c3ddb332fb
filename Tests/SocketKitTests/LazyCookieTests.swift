import Glibc
import Testing
import SocketKit
import TCPTrace

/// The socket cookie is read at attach only when the sink shows it (JSON, collectors); for a
/// text trace it is read where a sock_diag follow-up will need it: before the FIN that can lead
/// to TIME_WAIT (whose mini-socket carries the cookie only if it existed before), and before a
/// close() that leaves the socket to the follower. Issue 23: SO_COOKIE was a syscall a
/// connection a text trace never used.
@Suite struct LazyCookieTests {
    /// A collector that says what a text writer says: no cookies needed.
    final class TextLikeSink: TraceSink, Sendable {
        let collected = TraceCollector()
        func emit(_ event: TraceEvent) { collected.emit(event) }
        func flush() {}
        var needsCookies: Bool { false }
    }

    @Test func writers_sayWhetherTheyShowCookies() throws {
        let text = TraceWriter(format: .text, fd: open("/dev/null", O_WRONLY), ownsDescriptor: true, color: false, immediate: false)
        let json = TraceWriter(format: .json, fd: open("/dev/null", O_WRONLY), ownsDescriptor: true, color: false, immediate: false)
        #expect(!text.needsCookies && json.needsCookies && TraceCollector().needsCookies)
    }

    @Test func eagerSink_hasTheCookieFromTheStart() throws {
        let tracer = StateTracer(sink: TraceCollector(), side: .client)
        let (listener, client, server) = try TracedSocketTests.pair(tracer: tracer)
        defer { TracedSocketTests.close(client, server, listener) }
        #expect(client.tracker?.cookie == (try client.socket.cookie()))
        #expect(server.tracker?.cookie == (try server.socket.cookie()))
        tracer.follower.finish()
    }

    @Test(.needsTimeWaitRoom) func textSink_readsTheCookieBeforeAnActiveFIN_andTimeWaitCarriesIt() throws {
        let sink = TextLikeSink()
        let tracer = StateTracer(sink: sink, side: .client)
        let (listener, client, server) = try TracedSocketTests.pair(tracer: tracer)
        defer { TracedSocketTests.close(client, server, listener) }
        let local = try client.socket.localAddress(), peer = try client.socket.peerAddress()
        #expect(client.tracker?.cookie == nil && server.tracker?.cookie == nil, "read at attach")

        // Active close from ESTABLISHED: read before the FIN goes out.
        try client.sendFIN()
        let clientCookie = try #require(client.tracker?.cookie, "no cookie before the active FIN")
        #expect(clientCookie == (try client.socket.cookie()))

        // Passive close: CLOSE_WAIT → LAST_ACK → CLOSED has no TIME_WAIT; nothing read.
        #expect(try TracedSocketTests.receive(server) == 0)
        try server.sendFIN()
        #expect(server.tracker?.cookie == nil, "read for a passive close")

        // The client's TIME_WAIT mini-socket, found by its tuple alone, has the cookie read.
        #expect(try TracedSocketTests.receive(client) == 0)
        client.close()
        let diag = try SockDiag()
        let entry = try #require(try diag.lookup(local: local, peer: peer, cookie: nil, expectingTimeWait: true))
        #expect(entry.state == .timeWait && entry.cookie == clientCookie, "\(entry.state) \(entry.cookie) vs \(clientCookie)")

        // close() is the fd's last moment: read unless the socket is already CLOSED.
        let serverState = server.state
        server.close()
        #expect(serverState == .closed ? server.tracker?.cookie == nil : server.tracker?.cookie != nil,
                "\(String(describing: serverState)): \(String(describing: server.tracker?.cookie))")
        tracer.follower.settle(timeoutSeconds: 2)
        tracer.follower.finish()
    }

    @Test func textSink_readsTheCookieBeforeCloseInAnOpenState() throws {
        let tracer = StateTracer(sink: TextLikeSink(), side: .server)
        let (listener, client, server) = try TracedSocketTests.pair(tracer: tracer)
        defer { TracedSocketTests.close(client, listener) }
        let expected = try server.socket.cookie()
        // close() in ESTABLISHED sends the FIN and hands the socket to the follower.
        server.close()
        #expect(server.tracker?.cookie == expected)
        tracer.follower.settle(timeoutSeconds: 2)
        tracer.follower.finish()
    }
}
