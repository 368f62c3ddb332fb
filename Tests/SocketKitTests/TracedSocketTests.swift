import Glibc
import Testing
import SocketKit
import TCPTrace

/// `TracedSocket`: the engines' plain socket calls, each recording what it can change when a
/// tracer is given, and nothing at all without one (issue 19, item 1).
@Suite struct TracedSocketTests {
    /// A connected loopback pair: `connect` on a fresh socket, `accept` on a listener (bounded).
    static func pair(tracer: StateTracer?) throws -> (listener: TracedSocket, client: TracedSocket, server: TracedSocket) {
        let listener = TracedSocket(listening: try Socket.listening(on: SocketAddress(numericHost: "127.0.0.1", port: 0)!, backlog: 4),
                                    tracer: tracer, conn: 0, backlog: 4, diag: nil)
        let address = try listener.socket.localAddress()
        let client = TracedSocket(fresh: try Socket(family: AF_INET), tracer: tracer, diag: nil)
        if try !client.connect(to: address) {
            try wait(client, for: POLLOUT)
            try client.finishConnect(to: address)
        }
        try wait(listener, for: POLLIN)
        let server = try #require(try listener.accept(tracer: tracer, diag: nil))
        return (listener, client, server)
    }

    /// poll() for `events`, at most 5 s.
    static func wait(_ socket: TracedSocket, for events: Int32) throws {
        var p = pollfd(fd: socket.fd, events: Int16(events), revents: 0)
        let ready = poll(&p, 1, 5_000)
        try #require(ready == 1, "fd \(socket.fd) not ready for \(events) within 5 s")
    }

    /// One recv() after waiting (bounded) for something to read.
    static func receive(_ socket: TracedSocket) throws -> Int {
        try wait(socket, for: POLLIN)
        var buffer = [UInt8](repeating: 0, count: 64)
        guard case .processed(let n) = try buffer.withUnsafeMutableBytes({ try socket.receive(into: $0) }) else { return -1 }
        return n
    }

    static func close(_ sockets: TracedSocket...) {
        for socket in sockets { socket.close() }
    }

    @Test func untraced_isThePlainSocket_andRecordsNothing() throws {
        let (listener, client, server) = try Self.pair(tracer: nil)
        defer { Self.close(client, server, listener) }
        #expect(!client.isTraced && client.state == nil && client.nextCheck(now: 0) == nil)
        let sent = try Array("hi".utf8).withUnsafeBytes { try client.send($0) }
        #expect(sent == .processed(2))
        #expect(try Self.receive(server) == 2)
        try client.sendFIN()
        #expect(try Self.receive(server) == 0)
    }

    @Test func traced_recordsEachCallsStates_theFINsAndTheClose() throws {
        let sink = TraceCollector()
        let tracer = StateTracer(sink: sink, side: .client)
        let (listener, client, server) = try Self.pair(tracer: tracer)
        defer { Self.close(client, server, listener) }
        #expect(listener.state == .listen)
        #expect(client.state == .established && server.state == .established)
        try client.sendFIN()
        #expect([.finWait1, .finWait2].contains(client.state), "\(String(describing: client.state))")
        #expect(try Self.receive(server) == 0)
        let closeWait = sink.events.first { $0.conn == server.tracker?.conn && $0.to == .closeWait }
        #expect(closeWait?.cause == "recv()=0: peer sent FIN" && closeWait?.source == .tcpInfo)
        try server.sendFIN()
        #expect([.lastAck, .closed].contains(server.state), "\(String(describing: server.state))")
        // The accepted socket's SYN_RECEIVED is inferred, never claimed as seen.
        let synReceived = sink.events.first { $0.conn == server.tracker?.conn && $0.to == .synReceived }
        #expect(synReceived?.source == .inferred)
        server.close()
        #expect(server.tracker?.fdClosed == true && !server.isOpen)
        tracer.follower.settle(timeoutSeconds: 2)
        tracer.follower.finish()
    }

    @Test func failed_recordsTheErrorTheResetAndTheState() throws {
        let sink = TraceCollector()
        let tracer = StateTracer(sink: sink, side: .server)
        let (listener, client, server) = try Self.pair(tracer: tracer)
        defer { Self.close(client, server, listener) }
        try client.setAbortiveClose()
        client.close()   // RST
        try Self.wait(server, for: POLLIN)
        var buffer = [UInt8](repeating: 0, count: 16)
        do {
            _ = try buffer.withUnsafeMutableBytes { try server.receive(into: $0) }
            Issue.record("recv() after the peer's RST did not fail")
        } catch let error as SystemCallError {
            #expect(error.errno == ECONNRESET)
            server.failed(error, during: "recv")
        }
        #expect(server.tracker?.context.reset == true)
        #expect(sink.events.contains { $0.kind == .error && $0.errno == ECONNRESET && $0.conn == server.tracker?.conn })
        #expect(server.state == .closed)
    }
    /// What the server's shared listener and the lab ask of a traced socket, not of its tracker:
    /// the listener's shutdown read as CLOSED, an event to complete (nil untraced), the
    /// kernel's table entry by four-tuple.
    @Test func listenerShutdown_events_andTheKernelEntry() throws {
        let sink = TraceCollector()
        let tracer = StateTracer(sink: sink, side: .server)
        let (listener, client, server) = try Self.pair(tracer: tracer)
        defer { Self.close(client, server, listener) }
        let diag = try SockDiag()
        let entry = try #require(try server.kernelEntry(using: diag))
        #expect(entry.state == .established)
        #expect(server.side == .server && server.conn != nil && server.lastInfo?.state == .established)
        let event = try #require(server.event(.verdict, cause: "checked"))
        #expect(event.kind == .verdict && event.conn == server.conn && event.side == .server)
        #expect(TracedSocket(client.socket).event(.verdict, cause: "untraced") == nil)
        try listener.stopAccepting()
        #expect(listener.state == .closed)
        #expect(sink.events.contains { $0.to == .closed && $0.cause == "shutdown(SHUT_RDWR): stopped accepting" })
    }
}
