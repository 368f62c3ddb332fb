import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// Everything of one program run that may still hold trace lines: the sink's queue, the
/// kernel tracepoint's rings, and the sock_diag followers watching closed sockets (TIME_WAIT).
/// `finish` writes all of it out, in order, once; the last event can be a verdict.
///
/// One session is *current* per process. `CommandExit.run`, the single way out of both
/// executables, finishes it before printing the last line and exiting; and because some exits
/// are not in main's hands (a second SIGINT exits at once from the signal queue; `SysExits.fail`
/// anywhere), an `atexit` handler finishes it too. Finishing twice is a no-op.
public final class TraceSession: Sendable {
    public let sink: TraceSink
    private let kernel = Mutex<TracepointSource?>(nil)
    private let tracers = Mutex<[StateTracer]>([])
    private let conclusion = Mutex<TraceEvent?>(nil)
    private let wire = Mutex<(LiveWire, TraceSide)?>(nil)
    /// 0 open, 1 finishing, 2 finished.
    private let phase = Atomic<Int>(0)

    /// Make it current (`makeCurrent`) as soon as the sink exists: a trace file is open (and
    /// truncated) from then on, so every later way out must go through `finish`.
    public init(sink: TraceSink) {
        self.sink = sink
    }

    /// The kernel tracepoint source, stopped (its rings drained) when the session finishes.
    public func attach(_ source: TracepointSource?) { kernel.locked { $0 = source } }

    /// The live wire capture (`--wire on`), stopped when the session finishes; its summary
    /// (segments, drops) becomes an `info` event of `side`.
    public func attach(_ live: LiveWire?, side: TraceSide) { wire.locked { $0 = live.map { ($0, side) } } }

    /// Follows `tracer`'s closed sockets until the session finishes.
    public func add(_ tracer: StateTracer) { tracers.locked { $0.append(tracer) } }

    /// The event written after everything else (the client's verdict). The last call wins.
    public func conclude(with event: TraceEvent) { conclusion.locked { $0 = event } }

    /// Settles the followers (at most `settleSeconds`: a client's socket reaching TIME_WAIT or
    /// gone), reports what is still pending, stops the kernel source, writes the conclusion,
    /// and flushes the sink (bounded by its own flush timeout). Runs once; a concurrent second
    /// caller waits (bounded) for the first to finish, so whoever exits next exits after it.
    public func finish(settleSeconds: Double = 0) {
        guard phase.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged else {
            let deadline = MonotonicClock.now() + 7_000_000_000
            while phase.load(ordering: .acquiring) != 2 && MonotonicClock.now() < deadline { usleep(1_000) }
            return
        }
        let followers = tracers.locked { $0 }.map(\.follower)
        if settleSeconds > 0 { for follower in followers { follower.settle(timeoutSeconds: settleSeconds) } }
        for follower in followers { follower.finish() }
        kernel.locked { $0 }?.stop()
        if let (live, side) = wire.locked({ $0 }) {
            sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .info, cause: live.stop()))
        }
        if var event = conclusion.locked({ $0 }) {
            // Stamped when written: it follows every other event, in the file and in time.
            event.timestampNs = MonotonicClock.now()
            event.wallNs = MonotonicClock.wallNow()
            sink.emit(event)
        }
        sink.flush()
        phase.store(2, ordering: .releasing)
    }

    // MARK: the process's current session

    private static let current = Mutex<TraceSession?>(nil)
    private static let atExitInstalled = Atomic<Bool>(false)

    /// Makes this the session `CommandExit` and the exit handler finish.
    public func makeCurrent() {
        Self.current.locked { $0 = self }
        if !Self.atExitInstalled.exchange(true, ordering: .acquiringAndReleasing) {
            // exit() from anywhere (a second signal, SysExits.fail) runs this before the
            // process ends; _exit and a crash do not, and nothing can help those.
            atexit { TraceSession.finishCurrent() }
        }
    }

    /// Finishes the current session, if any (idempotent).
    public static func finishCurrent(settleSeconds: Double = 0) {
        current.locked { $0 }?.finish(settleSeconds: settleSeconds)
    }
}

/// The one way out of a command: run `body`, finish the trace session, then print the error
/// (one line on stderr, after the trace) and exit with its sysexits code.
public enum CommandExit {
    /// - Parameter settleSeconds: how long the followers may wait for a closed socket to reach
    ///   TIME_WAIT or leave the kernel's table before the exit (the client: 0.2 s).
    public static func run(_ command: String, settleSeconds: Double = 0, _ body: () throws -> Int32) -> Never {
        let status: Int32
        var message: String?
        do {
            status = try body()
        } catch {
            status = SysExits.code(for: error)
            message = "\(error)"
        }
        TraceSession.finishCurrent(settleSeconds: settleSeconds)
        if let message { SignalSafeOutput.line("\(command): \(message)") }
        exit(status)
    }
}
