import Glibc
import SocketKit
import Synchronization

/// Writes events in time order when two producers deliver them late by different amounts: the
/// tracker emits a state as soon as it reads it, the live wire's capture thread emits the
/// segment that caused it a little later (a poll wake-up), stamped earlier. Each event waits
/// `holdNs` (50 ms, far beyond the measured sub-millisecond capture delay on lo), then goes out
/// in `ts_ns` order; `flush` writes everything held at once.
public final class TimeOrderedSink: TraceSink, Sendable {
    private struct Held {
        var pending: [(event: TraceEvent, order: Int)] = []
        var order = 0
    }
    private let target: TraceSink
    private let holdNs: UInt64
    private let held = Mutex(Held())
    /// One releaser at a time, so two releases never interleave their batches.
    private let releasing = Mutex(())
    /// Set once the ticking thread exists (it needs `self`).
    private let thread = Mutex<ThreadHandle?>(nil)

    public init(target: TraceSink, holdNs: UInt64 = 50_000_000) {
        self.target = target
        self.holdNs = holdNs
        // A thread that ticks twice per hold: a quiet moment still shows what was held.
        let ticker = try? ThreadHandle { [weak self] in
            while let self {
                usleep(UInt32(min(self.holdNs / 2_000, 1_000_000)))
                self.release(olderThan: MonotonicClock.now() &- self.holdNs)
            }
        }
        thread.locked { $0 = ticker }
    }

    public func emit(_ event: TraceEvent) {
        held.locked { $0.pending.append((event, $0.order)); $0.order += 1 }
    }

    public func flush() {
        release(olderThan: .max)
        target.flush()
    }

    public func requestFlush() { target.requestFlush() }

    private func release(olderThan cutoff: UInt64) {
        releasing.locked { _ in
            let ready = held.locked { h -> [(event: TraceEvent, order: Int)] in
                let ready = h.pending.filter { $0.event.timestampNs <= cutoff }
                h.pending.removeAll { $0.event.timestampNs <= cutoff }
                return ready
            }
            for item in ready.sorted(by: { ($0.event.timestampNs, $0.order) < ($1.event.timestampNs, $1.order) }) {
                target.emit(item.event)
            }
        }
    }
}
