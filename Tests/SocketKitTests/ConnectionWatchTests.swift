import CSocketKit
import Glibc
@testable import SocketKit
@testable import TCPTrace
import Testing

/// TCPWatch's engine fed by hand-made sock_diag entries: what a poll, a destroy notification
/// and the clock make of them.
@Suite struct ConnectionWatchTests {
    static let server = SocketAddress(numericHost: "127.0.0.1", port: 8080)!
    static let client = SocketAddress(numericHost: "127.0.0.1", port: 50000)!
    static let wildcard = SocketAddress(numericHost: "0.0.0.0", port: 0)!

    static func entry(_ state: TCPState, local: SocketAddress, peer: SocketAddress, cookie: UInt64, inode: UInt32 = 0,
                      receiveQueue: UInt32 = 0) -> SockDiagEntry {
        SockDiagEntry(state: state, local: local, peer: peer, cookie: cookie, inode: inode, timer: 0, expiresMs: 0,
                      receiveQueue: receiveQueue, sendQueue: 0, uid: 0, info: nil)
    }

    static func makeWatch(_ collector: TraceCollector, warnAfter: Double = 1) -> ConnectionWatch {
        ConnectionWatch(selection: WatchSelection(ports: [8080]), sink: collector, baseNs: 0, closeWaitWarnSeconds: warnAfter)
    }

    @Test func pollTransition_isLabelledWithBothPollTimes_andFillsTheRFCPath() {
        let collector = TraceCollector()
        let watch = Self.makeWatch(collector)
        let listener = Self.entry(.listen, local: Self.server, peer: Self.wildcard, cookie: 1)
        watch.applySnapshot([listener], at: 1_000_000_000)
        watch.applySnapshot([listener, Self.entry(.closeWait, local: Self.server, peer: Self.client, cookie: 2)], at: 1_500_000_000)
        let states = collector.events.filter { $0.kind == .state && $0.conn == 2 }
        #expect(states.map(\.to) == [.synReceived, .established, .closeWait], "\(states.map(\.cause))")
        #expect(states.map(\.source) == [.inferred, .inferred, .sockDiag])
        #expect(states.last?.cause.contains("between polls at +1.000000 s and +1.500000 s") == true, "\(states.last?.cause ?? "")")
        #expect(states.last?.side == .server, "its local port is a listener's")
        #expect(states.last?.inStateNs == nil, "an inferred state has no known duration")
    }

    @Test func destroyOnly_connection_isReportedWithAFinalState() {
        let collector = TraceCollector()
        let watch = Self.makeWatch(collector)
        watch.applySnapshot([], at: 1_000_000_000)
        watch.applyDestroyed(Self.entry(.closed, local: Self.client, peer: Self.server, cookie: 9), at: 1_200_000_000) { _ in nil }
        let states = collector.events.filter { $0.kind == .state }
        #expect(states.first?.to == .synSent && states.last?.to == .closed, "\(states.map { $0.to?.name ?? "?" })")
        #expect(states.last?.source == .sockDiag && states.dropLast().allSatisfy { $0.source == .inferred })
        #expect(watch.statistics.onlyThroughDestroy == 1)
        #expect(watch.watchedCount == 0, "a closed connection leaves the table")
    }

    @Test func destroyedActiveCloser_continuesInItsTimeWaitMiniSocket() {
        let collector = TraceCollector()
        let watch = Self.makeWatch(collector)
        watch.applySnapshot([Self.entry(.finWait2, local: Self.client, peer: Self.server, cookie: 3)], at: 1_000_000_000)
        var minisocket = Self.entry(.timeWait, local: Self.client, peer: Self.server, cookie: 77)
        minisocket.expiresMs = 59_000
        watch.applyDestroyed(Self.entry(.closed, local: Self.client, peer: Self.server, cookie: 3), at: 1_100_000_000) { _ in minisocket }
        let last = collector.events.last { $0.kind == .state }
        #expect(last?.to == .timeWait && last?.timerMs == 59_000, "\(last?.cause ?? "")")
        // The next poll shows the mini-socket under its own cookie: the same connection.
        watch.applySnapshot([minisocket], at: 1_200_000_000)
        #expect(collector.events.filter { $0.kind == .state }.count == 2, "\(collector.events.map(\.cause))")
    }

    @Test func closeWaitWarning_namesTheCount_andRepeatsOnlyWhenItGrows() {
        let collector = TraceCollector()
        let watch = Self.makeWatch(collector, warnAfter: 1)
        let listener = Self.entry(.listen, local: Self.server, peer: Self.wildcard, cookie: 1)
        let peers = (1...3).map { SocketAddress(numericHost: "127.0.0.1", port: UInt16(50000 + $0))! }
        watch.applySnapshot([listener], at: 1_000_000_000)
        let first = [listener, Self.entry(.closeWait, local: Self.server, peer: peers[0], cookie: 10, receiveQueue: 5)]
        watch.applySnapshot(first, at: 2_000_000_000)
        watch.checkCloseWait(now: 3_100_000_000)
        watch.checkCloseWait(now: 3_200_000_000)
        let all = first + peers.dropFirst().enumerated().map { Self.entry(.closeWait, local: Self.server, peer: $1, cookie: UInt64(11 + $0)) }
        watch.applySnapshot(all, at: 3_300_000_000)
        watch.checkCloseWait(now: 4_500_000_000)
        let warnings = collector.events.filter { $0.kind == .warning }
        #expect(warnings.count == 2, "\(warnings.map(\.cause))")
        #expect(warnings.first?.cause.contains("5 bytes unread (Recv-Q)") == true)
        #expect(warnings.last?.cause.contains("holds 3 sockets in CLOSE_WAIT, oldest 2.5 s") == true, "\(warnings.last?.cause ?? "")")
        #expect(warnings.allSatisfy { $0.heldState == .closeWait && $0.cause.hasSuffix("the program has not called close()") })
    }

    /// A report's `now` is read before a poll that applies the kernel's changes, stamped later:
    /// a CLOSE_WAIT entered after `now` is 0 s old there, not past the warning threshold (the
    /// difference wrapped), and reading its age must not trap (TCPWatch crashed with "arithmetic
    /// overflow" under a busy host's churn, 2026-12-04).
    @Test func reports_withANowOlderThanTheLastChange_sayZero_andDoNotWarn() {
        let collector = TraceCollector()
        let watch = Self.makeWatch(collector, warnAfter: 1)
        func change(_ old: KernelTCPState, _ new: KernelTCPState, at ns: UInt64) -> KernelStateChange {
            KernelStateChange(timestampNs: ns, skaddr: 0xfeed, oldState: old.rawValue, newState: new.rawValue, family: AF_INET,
                              sourcePort: 8080, destinationPort: 50000, sourceAddress: "127.0.0.1", destinationAddress: "127.0.0.1",
                              pid: 0)
        }
        watch.applyKernel(change(.listen, .synRecv, at: 5_000_000_000)) { _, _, _ in nil }
        watch.applyKernel(change(.synRecv, .established, at: 5_000_100_000)) { _, _, _ in nil }
        watch.applyKernel(change(.established, .closeWait, at: 5_000_200_000)) { _, _, _ in nil }
        let before: UInt64 = 4_000_000_000   // read before the poll that applied the changes
        watch.checkCloseWait(now: before)
        #expect(!collector.events.contains { $0.kind == .warning }, "\(collector.events.filter { $0.kind == .warning }.map(\.cause))")
        #expect(watch.summaryLine(now: before).contains("CLOSE_WAIT 1 (oldest 0 µs)"), "\(watch.summaryLine(now: before))")
        watch.finishSockets(now: before)
        let still = collector.events.last { $0.kind == .info && $0.heldState == .closeWait }
        #expect(still?.cause.hasPrefix("still CLOSE_WAIT after 0 µs") == true, "\(still?.cause ?? "none")")
        #expect(still?.inStateNs == 0)
        // Past the threshold by a later clock, the warning comes, with the real age.
        watch.checkCloseWait(now: 6_500_200_000)
        let warning = collector.events.last { $0.kind == .warning }
        #expect(warning?.cause.contains("in CLOSE_WAIT for 1.5 s") == true, "\(warning?.cause ?? "none")")
    }

    @Test func adaptivePolling_fastWhileBusy_backsOff_neverSlowerThanHalfASecond() {
        var polling = AdaptivePolling(budget: 0.1)
        #expect(polling.next(busy: true, cost: 100_000) == AdaptivePolling.fastestNs)
        #expect(polling.next(busy: false, cost: 100_000) == 2 * AdaptivePolling.fastestNs)
        for _ in 0..<10 { _ = polling.next(busy: false, cost: 100_000) }
        #expect(polling.intervalNs == AdaptivePolling.slowestNs)
        // An expensive dump (30 ms) slows the busy rate to cost / budget, capped at 0.5 s.
        var expensive = AdaptivePolling(budget: 0.1)
        #expect(expensive.next(busy: true, cost: 30_000_000) == 300_000_000)
        #expect(expensive.next(busy: true, cost: 90_000_000) <= AdaptivePolling.slowestNs)
    }

    @Test func portBytecode_layout_isTheOneSsCompiles() {
        // Two ports: S_EQ a, JMP, D_EQ a, JMP, S_EQ b, JMP, D_EQ b: 4 tests of 8 bytes + 3 JMPs of 4.
        let code = WatchFilters.portBytecode([80, 443])
        #expect(code.count == 4 * 8 + 3 * 4)
        #expect(code[0] == UInt8(INET_DIAG_BC_S_EQ) && code[1] == 8 && code[2] == 12 && code[3] == 0)
        #expect(code[8] == UInt8(INET_DIAG_BC_JMP) && code[9] == 4)
        #expect(Int(code[10]) | Int(code[11]) << 8 == 3 * 8 + 2 * 4 + 4, "the first JMP skips to the end")
        #expect(WatchFilters.portBytecode([]).isEmpty)
    }
}
