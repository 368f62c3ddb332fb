import Glibc
import TestSupport
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct SocketTrackerTests {
    @Test func inferredStates_areLabelledAndNeverClaimTcpInfo() {
        let sink = TraceCollector()
        let tracer = StateTracer(sink: sink, side: .client)
        let tracker = tracer.track(initial: .closed, diag: nil)
        tracker.noteOurFIN()
        tracker.record(.established, source: .tcpInfo, cause: "connect()")
        tracker.record(.closed, source: .tcpInfo, cause: "fd reads CLOSED")
        let states = sink.events.map { "\($0.to!.name):\($0.source!.rawValue)" }
        #expect(states == ["SYN_SENT:inferred", "ESTABLISHED:tcp_info", "FIN_WAIT_1:inferred",
                           "FIN_WAIT_2:inferred", "TIME_WAIT:inferred", "CLOSED:tcp_info"])
    }

    @Test func disallowedTransition_isFlaggedNotRewritten() {
        let sink = TraceCollector()
        let tracker = StateTracer(sink: sink, side: .server).track(initial: .timeWait, diag: nil)
        tracker.record(.established, source: .tcpInfo, cause: "test")
        #expect(sink.events.count == 1)
        #expect(sink.events[0].unexpected)
        #expect(sink.events[0].from == .timeWait && sink.events[0].to == .established)
    }

    @Test func timeInState_measuredOnlyFromObservedStates() {
        let sink = TraceCollector()
        let tracker = StateTracer(sink: sink, side: .client).track(initial: nil, diag: nil)
        tracker.record(.established, source: .tcpInfo, cause: "a", at: 1_000)
        tracker.record(.closeWait, source: .tcpInfo, cause: "b", at: 5_000)
        #expect(sink.events[1].inStateNs == 4_000)
        tracker.noteReset()
        tracker.record(.closed, source: .inferred, cause: "c", at: 9_000)
        tracker.record(.listen, source: .tcpInfo, cause: "d", at: 10_000)
        #expect(sink.events.last?.inStateNs == nil)
    }

    @Test func closeWaitWarning_firesOnceAfterThreshold() {
        let sink = TraceCollector()
        let tracker = StateTracer(sink: sink, side: .server, closeWaitWarnSeconds: 1).track(initial: .established, diag: nil)
        tracker.notePeerFIN()
        tracker.record(.closeWait, source: .tcpInfo, cause: "recv()=0", at: 1_000_000_000)
        tracker.checkCloseWait(now: 1_500_000_000)
        #expect(sink.events.filter { $0.kind == .warning }.isEmpty)
        tracker.checkCloseWait(now: 2_100_000_000)
        tracker.checkCloseWait(now: 3_000_000_000)
        let warnings = sink.events.filter { $0.kind == .warning }
        #expect(warnings.count == 1)
        #expect(warnings[0].cause.contains("the application has not called close()"))
    }

    /// A real loopback exchange, client closes first: the client's fd ends in TIME_WAIT,
    /// which only sock_diag can show.
    @Test(.needsTimeWaitRoom) func activeCloser_reportsTimeWaitFromSockDiag() throws {
        let (client, server, listener) = try SockDiagTests.connectedPair()
        defer { try? listener.close() }
        let sink = TraceCollector()
        let tracer = StateTracer(sink: sink, side: .client)
        let tracker = tracer.track(initial: .closed, diag: try SockDiag())
        tracker.attach(client)
        tracker.observe(client, cause: "connect()")
        try client.shutdown(.write)
        tracker.noteOurFIN()
        tracker.observe(client, cause: "shutdown(SHUT_WR)")
        try server.shutdown(.write)
        // Until the server's FIN has arrived, bounded: the client leaves FIN_WAIT_1/2 (its full
        // socket reads CLOSE then; the connection lives on as a TIME_WAIT mini-socket).
        func waiting() -> Bool { [.finWait1, .finWait2].contains((try? client.tcpInfo().state) ?? .closed) }
        let deadline = MonotonicClock.now() + 2_000_000_000
        while waiting() && MonotonicClock.now() < deadline { usleep(1_000) }
        #expect(!waiting(), "the server's FIN reached the client")
        tracker.observe(client, cause: "after the server's FIN")
        try client.close()
        try server.close()
        tracker.closed(cause: "close()")
        tracer.follower.settle(timeoutSeconds: 2)
        tracer.follower.finish()
        let timeWait = try #require(sink.events.first { $0.to == .timeWait })
        #expect(timeWait.source == .sockDiag)
        #expect(timeWait.timerMs != nil)
        let path = sink.events.filter { $0.kind == .state }.compactMap(\.to)
        #expect(path.starts(with: [.synSent, .established]))
        #expect(path.contains(.finWait1) && path.contains(.finWait2))
        #expect(path.last == .timeWait)
        #expect(sink.events.contains { $0.kind == .info && $0.cause.contains("still TIME_WAIT") })
    }
}
