import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// README: "Records dropped by a full ring buffer are reported as a warning, and those sockets
/// fall back to inference." The tracer's rings are one page per CPU (~39 records). Our client
/// connects (its changes reach the trace from the tracepoint: linked), then the source's drains
/// are held while a burst of other connections fills the rings, and the client closes: its
/// close records are dropped. The trace must warn, and still hold every state the kernel set
/// (an independent 512-page oracle says which), from tcp_info, sock_diag and inference.
/// Only ~100 extra connections: other tracepoint tests running meanwhile are not disturbed.
@Suite(.serialized, .needsTimeWaitRoom,
       .enabled(if: Oracle.available, "needs root (or CAP_PERFMON) and the sock:inet_sock_set_state tracepoint"))
struct LostRecordsTests {
    /// Connect/reset loopback connections that are not ours: ~6 state changes each, no TIME_WAIT.
    static func burst(_ count: Int) throws {
        let listener = try Socket.listening(on: SocketAddress(numericHost: "127.0.0.1", port: 0)!, backlog: 256)
        defer { try? listener.close() }
        try listener.setNonBlocking(false)
        let address = try listener.localAddress()
        for _ in 0..<count {
            let client = try Socket(family: AF_INET, nonBlocking: false)
            _ = try client.connect(to: address)
            if case .processed(let server) = try listener.accept(nonBlocking: false) {
                try server.setAbortiveClose()
                try server.close()
            }
            try client.close()
        }
    }

    /// `reset`: the server aborts (RST), our client goes ESTABLISHED → CLOSED; otherwise a
    /// graceful close, our client FIN_WAIT_1 → FIN_WAIT_2 → TIME_WAIT.
    @Test(arguments: [false, true])
    func fullRings_warnAndOurSocketFallsBackToInference(reset: Bool) throws {
        let oracle = try KernelTracepoint(pagesPerCPU: Oracle.pagesPerCPU)
        defer { oracle.close() }
        let collector = TraceCollector()
        let source = try TracepointSource(sink: collector, side: .client, pagesPerCPU: 1, wakeupEvents: 1_000_000)
        defer { source.stop() }
        let listener = try Socket.listening(on: SocketAddress(numericHost: "127.0.0.1", port: 0)!, backlog: 4)
        defer { try? listener.close() }
        try listener.setNonBlocking(false)
        let tracer = StateTracer(sink: collector, side: .client, kernel: source)
        let client = try Socket(family: AF_INET, nonBlocking: false)
        let tracker = tracer.track(initial: .closed, diag: try SockDiag())
        _ = try client.connect(to: try listener.localAddress())
        tracker.attach(client)
        tracker.observe(client, cause: "connect()")
        guard case .processed(let server) = try listener.accept(nonBlocking: false) else {
            Issue.record("accept failed"); return
        }
        #expect(tracker.isKernelLinked, "the connect's changes came from the tracepoint")

        source.drainsHeld.store(true, ordering: .relaxed)
        try Self.burst(100)   // ~600 changes: both one-page rings are full
        if reset {
            try server.setAbortiveClose()
            try server.close()    // RST: our client goes ESTABLISHED → CLOSED, unrecorded
        } else {
            try client.shutdown(.write)
            tracker.noteOurFIN()
            try server.close()    // the peer's FIN: our client goes FIN_WAIT_2 → TIME_WAIT, unrecorded
        }
        let deadline = MonotonicClock.now() + 2_000_000_000
        while (try? client.tcpInfo().state).map({ [.established, .finWait1, .finWait2].contains($0) }) == true && MonotonicClock.now() < deadline {
            usleep(1_000)
        }
        source.drainsHeld.store(false, ordering: .relaxed)
        source.sync()
        tracker.observe(client, cause: "after the server's FIN")
        try client.close()
        tracker.closed(cause: "close()")
        tracer.follower.settle(timeoutSeconds: 2)
        tracer.follower.finish()
        source.reportLost()
        // Until the oracle has read our client's change to CLOSE (bounded): it reaches the
        // rings from softirq, possibly after close() returned.
        let decoder = try OracleDecoder()
        let local = try #require(tracker.local), peer = try #require(tracker.peer)
        var kernel: [KernelStateChange] = []
        let drainDeadline = MonotonicClock.now() + 2_000_000_000
        repeat {
            kernel += decoder.drain(oracle)
        } while !kernel.contains(where: { $0.sourcePort == local.port && $0.destinationPort == peer.port && $0.newState == 7 })
            && MonotonicClock.now() < drainDeadline && usleep(1_000) == 0

        #expect(source.tracepoint.lostRecords > 0, "the one-page rings overflowed")
        let warning = collector.events.first { $0.kind == .warning && $0.cause.hasPrefix("kernel trace: the ring buffers dropped") }
        #expect(warning?.cause.contains("filled from tcp_info, sock_diag and inference") == true, "lost records are reported, never silent")
        // What the kernel did to our client, from the independent oracle.
        let ours = kernel.filter { $0.sourcePort == local.port && $0.destinationPort == peer.port && $0.oldState != $0.newState }
        var expected = ours.map { TCPState(kernel: $0.newState) }
        if !reset && expected.last == .closed { expected[expected.count - 1] = .timeWait }   // X→CLOSE: the mini-socket took over
        let states = collector.events.filter { $0.kind == .state && $0.conn == tracker.conn }
        let path = states.compactMap(\.to)
        let last: TCPState = reset ? .closed : .finWait2
        #expect(expected.contains(last), "the oracle saw the close: \(expected)")
        for state in expected { #expect(path.contains(state), "\(state.name) in the trace: \(path)") }
        #expect(states.contains { $0.to == last && $0.source != .tracepoint }, "\(last.name) filled in, not from the (dropped) tracepoint record")
        print("lost records: \(source.tracepoint.lostRecords) dropped; client trace \(states.map { "\($0.to!.name)[\($0.source!.rawValue)]" })")
    }
}
