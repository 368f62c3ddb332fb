import Testing
@testable import SocketKit
@testable import TCPTrace

/// `syscall` events: only with `--trace-verbose`, and without it nothing is built or read.
@Suite struct SyscallTraceTests {
    final class Counter: @unchecked Sendable { var value = 0 }

    @Test func notVerbose_buildsNoText_readsNoClock_emitsNothing() {
        let sink = TraceCollector()
        let tracker = StateTracer(sink: sink, side: .client, verbose: false).track(initial: .closed, diag: nil)
        let built = Counter()
        func text() -> String { built.value += 1; return "send(fd 3, 6 bytes) = 6" }
        #expect(tracker.syscallStart() == nil)
        for _ in 0..<1_000 { tracker.syscall(text(), startedAt: tracker.syscallStart()) }
        #expect(built.value == 0, "the text was built without --trace-verbose")
        #expect(sink.events.isEmpty)
        // What it costs: a Bool test per call (measured here, printed, not asserted).
        let calls = 1_000_000
        let start = MonotonicClock.now()
        for _ in 0..<calls { tracker.syscall(text(), startedAt: tracker.syscallStart()) }
        let ns = Double(MonotonicClock.now() - start) / Double(calls)
        print("syscall() without --trace-verbose: \(ns) ns per call (syscallStart + syscall)")
        #expect(built.value == 0)
    }

    @Test func verbose_datesTheEventWhenTheCallBegan() {
        let sink = TraceCollector()
        let tracker = StateTracer(sink: sink, side: .client, verbose: true).track(initial: .closed, diag: nil)
        let started = tracker.syscallStart()
        #expect(started != nil)
        tracker.syscall("connect(fd 3, 127.0.0.1:7007) = 0", startedAt: started)
        #expect(sink.events.count == 1)
        #expect(sink.events.first?.kind == .syscall)
        #expect(sink.events.first?.timestampNs == started)
        #expect(sink.events.first?.cause == "connect(fd 3, 127.0.0.1:7007) = 0")
    }
}
