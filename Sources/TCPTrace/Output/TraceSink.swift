import Glibc
import SocketKit
import Synchronization

/// Where trace events go. Implementations are thread-safe: the server's loops, the sock_diag
/// follower and the client may emit concurrently.
public protocol TraceSink: AnyObject, Sendable {
    func emit(_ event: TraceEvent)
    /// Pushes buffered output out; called by event loops once per wakeup, and at exit.
    func flush()
    /// Asks for buffered output to go out soon without waiting for it (event loops call this
    /// once per wakeup). Defaults to `flush()`.
    func requestFlush()
}

extension TraceSink {
    public func requestFlush() { flush() }
}

/// Output format chosen with `--trace`.
public enum TraceFormat: String, Sendable, CaseIterable {
    case text, json, off
}

/// Renders events and writes them to a file descriptor from a background thread.
///
/// Policy (a slow terminal, pipe or file must never stall the echo path):
/// - `emit` only appends the event to a bounded in-memory queue under a short lock; rendering
///   and write(2) happen on the writer thread. The bound is in events (`capacity`) and in bytes
///   (`byteBudget`, the event plus the text and data it carries): under connect churn a queue of
///   16,384 events took the traced server's peak RSS to 41–50 MiB; 1 MiB of events keeps it
///   small while a writer that keeps up never drops.
/// - When the queue is full the event is dropped and counted. As soon as the writer catches
///   up it writes one warning line `trace: N lines dropped (slow reader)`, so a reader always
///   knows the trace has a gap, and where.
/// - `requestFlush()` (event loops, once per wakeup) only wakes the writer; `flush()` (exit,
///   interactive clients) waits until everything queued so far is written, at most
///   `flushTimeoutSeconds`, so a stuck reader cannot hang the process at exit.
/// - With `immediate` (an interactive terminal) the writer is woken on every event.
/// @unchecked: immutable apart from the core, whose state sits behind a pthread mutex.
public final class TraceWriter: TraceSink, @unchecked Sendable {
    public let format: TraceFormat
    private let core: TraceWriterCore

    /// - Parameter width: the terminal's columns, to fit text lines to it; nil (pipes, files)
    ///   keeps one full line per event. JSON ignores it.
    public init(format: TraceFormat, fd: Int32, ownsDescriptor: Bool = false, color: Bool, immediate: Bool,
                baseNs: UInt64 = MonotonicClock.now(), capacity: Int = 16_384, byteBudget: Int = 1 << 20,
                flushTimeoutSeconds: Double = 5, side: TraceSide = .server, width: Int? = nil) {
        self.format = format
        core = TraceWriterCore(format: format, fd: fd, ownsDescriptor: ownsDescriptor, color: color,
                               immediate: immediate, baseNs: baseNs, capacity: capacity, byteBudget: byteBudget,
                               flushTimeoutSeconds: flushTimeoutSeconds, side: side, width: width)
    }

    /// Opens (creating or truncating) a trace file. C: `open(2)`.
    public static func file(path: String, format: TraceFormat) throws -> TraceWriter {
        // "open(PATH): ..." names the file, not just the call.
        let fd = try TextFile.createForWriting(path)
        return TraceWriter(format: format, fd: fd, ownsDescriptor: true, color: false, immediate: false)
    }

    /// Writes what is queued, stops the writer thread (it closes an owned descriptor).
    deinit { core.shutdown() }

    /// The queue bound: events beyond it are dropped and counted.
    public var capacity: Int { core.capacity }
    /// Events dropped so far because the reader was too slow.
    public var droppedCount: Int { core.droppedCount }
    public func emit(_ event: TraceEvent) { core.emit(event) }
    public func requestFlush() { core.requestFlush() }
    public func flush() { core.flush() }
}

/// The queue and the writer thread behind `TraceWriter`. The thread owns rendering and I/O.
/// @unchecked: the shared queue and flags are guarded by `lock` (a pthread mutex, which TSan
/// sees); `text`, `failed` and `out` belong to the writer thread.
final class TraceWriterCore: @unchecked Sendable {
    let format: TraceFormat
    let capacity: Int
    let byteBudget: Int
    private let fd: Int32
    private let ownsDescriptor: Bool
    private let immediate: Bool
    private let flushTimeoutSeconds: Double
    private let side: TraceSide
    private var text: TextTraceRenderer            // writer thread only
    private var failed = false                     // writer thread only (or under `lock` once synchronous)
    /// No writer thread could be started: every event is written on the emitting thread, under
    /// `lock`, as it comes.
    private var synchronous = false                // under `lock`
    private var out = TraceBytes(capacity: 64 * 1024)  // writer thread only, reused batch after batch
    /// A regular file: write(2) never waits for a reader, so a batch goes out in one call
    /// instead of PIPE_BUF chunks after poll().
    private let regularFile: Bool

    // Shared state, guarded by `lock`.
    // Heap-allocated: pthread objects must not move, and a Swift stored property may.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [TraceEvent] = []
    private var queuedBytes = 0
    private var spare: [TraceEvent] = []
    private var dropped = 0
    private var droppedTotal = 0
    private var enqueued = 0                       // events accepted so far
    private var written = 0                        // events the writer has finished with
    private var writerSleeping = false
    /// `timestampNs` of the event that made the queue non-empty (the batch's oldest, roughly).
    private var firstQueuedNs: UInt64 = 0
    /// A batch: what `requestFlush()` waits for before waking the writer.
    static let batchEvents = 256
    static let batchDelayNs: UInt64 = 5_000_000
    private var writerStarted = false
    private var stopping = false
    /// `stopping`, readable by the writer while it waits for a slow reader without the lock.
    private let stopFlag = Atomic<Bool>(false)
    /// Set by `emit`, cleared when the writer takes the queue: lets `requestFlush()` (every loop
    /// wakeup, mostly with nothing to write) return after one atomic load instead of taking a
    /// lock that every loop shares.
    private let unflushed = Atomic<Bool>(false)
    private var thread: ThreadHandle?

    init(format: TraceFormat, fd: Int32, ownsDescriptor: Bool, color: Bool, immediate: Bool,
         baseNs: UInt64, capacity: Int, byteBudget: Int, flushTimeoutSeconds: Double, side: TraceSide, width: Int?) {
        self.format = format
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
        self.immediate = immediate
        self.capacity = max(1, capacity)
        self.byteBudget = max(Self.footprint, byteBudget)
        self.flushTimeoutSeconds = flushTimeoutSeconds
        self.side = side
        text = TextTraceRenderer(baseNs: baseNs, color: color, width: width)
        var status = stat()
        regularFile = fstat(fd, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
    }

    /// What one queued event costs besides its text: the struct itself (addresses are shared
    /// per socket, so not counted per event).
    static let footprint = MemoryLayout<TraceEvent>.stride

    deinit {
        // The writer thread holds a strong reference while it runs, so deinit means it is gone.
        pthread_cond_destroy(wake)
        pthread_cond_destroy(done)
        pthread_mutex_destroy(lock)
        lock.deallocate()
        wake.deallocate()
        done.deallocate()
        if ownsDescriptor { Glibc.close(fd) }
    }

    /// Flushes (bounded), then lets the writer thread end.
    func shutdown() {
        flush()
        pthread_mutex_lock(lock)
        stopping = true
        stopFlag.store(true, ordering: .relaxed)
        pthread_cond_signal(wake)
        pthread_mutex_unlock(lock)
        thread?.join()
        thread = nil
    }

    var droppedCount: Int {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return droppedTotal
    }

    func emit(_ event: TraceEvent) {
        guard format != .off else { return }
        let size = Self.footprint + event.cause.utf8.count + (event.bytes?.count ?? 0)
        pthread_mutex_lock(lock)
        if synchronous {
            render(event)
            write()
            pthread_mutex_unlock(lock)
            return
        }
        if queue.count >= capacity || queuedBytes + size > byteBudget {
            dropped += 1
            droppedTotal += 1
            pthread_mutex_unlock(lock)
            return
        }
        queue.append(event)
        queuedBytes += size
        enqueued += 1
        unflushed.store(true, ordering: .relaxed)
        let start = !writerStarted
        if start { writerStarted = true }
        // Batch: wake the writer per event only for a terminal or when a quarter full.
        let signal = writerSleeping && (immediate || queue.count >= capacity / 4 || queuedBytes >= byteBudget / 4)
        if queue.count == 1 { firstQueuedNs = event.timestampNs }
        if signal { writerSleeping = false; pthread_cond_signal(wake) }
        pthread_mutex_unlock(lock)
        if start { startWriter() }
    }

    /// Wakes the writer when a batch is worth a write: `batchEvents` queued, or the oldest
    /// queued event is `batchDelayNs` old, or a drop is to be reported; never blocks on I/O.
    /// Waking it on every loop wakeup (the earlier policy) cost a futex wake, a context switch
    /// and a write(2) per few events under connect churn: ~15% of the traced server's samples
    /// in `finish_task_switch` alone.
    func requestFlush() {
        guard unflushed.load(ordering: .relaxed) else { return }
        pthread_mutex_lock(lock)
        if writerSleeping && (dropped > 0 || queue.count >= Self.batchEvents
                              || (!queue.isEmpty && MonotonicClock.now() &- firstQueuedNs >= Self.batchDelayNs)) {
            writerSleeping = false
            pthread_cond_signal(wake)
        }
        pthread_mutex_unlock(lock)
    }

    /// Waits until every event emitted before this call is written (or dropped), at most
    /// `flushTimeoutSeconds`.
    func flush() {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard writerStarted, !synchronous else { return }
        let target = enqueued
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let total = Double(deadline.tv_sec) + Double(deadline.tv_nsec) / 1e9 + flushTimeoutSeconds
        deadline.tv_sec = Int(total)
        deadline.tv_nsec = Int((total - Double(Int(total))) * 1e9)
        while written < target || dropped > 0 {
            if writerSleeping { writerSleeping = false; pthread_cond_signal(wake) }
            if pthread_cond_timedwait(done, lock, &deadline) == ETIMEDOUT { return }
        }
    }

    private func startWriter() {
        do {
            thread = try ThreadHandle { [self] in writerLoop() }
        } catch {
            // No thread: write on the callers' threads from now on, starting with what is queued.
            pthread_mutex_lock(lock)
            synchronous = true
            for event in queue { render(event) }
            write()
            written += queue.count
            queue.removeAll()
            queuedBytes = 0
            pthread_mutex_unlock(lock)
        }
    }

    private func writerLoop() {
        pthread_mutex_lock(lock)
        while true {
            while queue.isEmpty && dropped == 0 {
                if stopping { pthread_mutex_unlock(lock); return }
                writerSleeping = true
                pthread_cond_broadcast(done)
                // Wake at least every 50 ms: a server that emits a few events and then sits
                // idle (no loop wakeups, so no requestFlush) still gets them out promptly.
                var deadline = timespec()
                clock_gettime(CLOCK_REALTIME, &deadline)
                deadline.tv_nsec += 50_000_000
                if deadline.tv_nsec >= 1_000_000_000 { deadline.tv_sec += 1; deadline.tv_nsec -= 1_000_000_000 }
                _ = pthread_cond_timedwait(wake, lock, &deadline)
                writerSleeping = false
            }
            swap(&queue, &spare)
            queuedBytes = 0
            unflushed.store(false, ordering: .relaxed)
            let lost = dropped
            dropped = 0
            pthread_mutex_unlock(lock)

            // A local array read by index: `for event in spare`, or `spare[i]` of this class's
            // property, copied every event (a TraceEvent copy retains each of its strings;
            // copies and destroys were ~20% of a traced server's instructions, callgrind).
            var batch: [TraceEvent] = []
            swap(&batch, &spare)
            for index in batch.indices { render(batch[index]) }
            let count = batch.count
            batch.removeAll(keepingCapacity: true)
            swap(&batch, &spare)
            if lost > 0 {
                render(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .warning,
                                  cause: "trace: \(lost) lines dropped (slow reader)"))
            }
            write()

            pthread_mutex_lock(lock)
            written += count
            if queue.isEmpty { pthread_cond_broadcast(done) }
        }
    }

    private func render(_ event: TraceEvent) {
        if format == .json {
            JSONTraceRenderer.render(event, into: &out)
        } else if text.width == nil {
            text.render(event, into: &out)
        } else {
            out.append(text.fitted(event))   // a terminal: wrapped to its width, not a hot path
        }
        out.append(byte: UInt8(ascii: "\n"))
    }

    /// Writes `out` in chunks of at most PIPE_BUF after poll(POLLOUT): a pipe or terminal
    /// that reports POLLOUT takes that much without blocking, so this thread never sits in a
    /// write(2) it cannot leave, and `shutdown()` can always stop it.
    private func write() {
        guard !out.isEmpty else { return }
        defer { out.removeAll(keepingCapacity: out.count <= 1 << 20) }
        guard !failed else { return }
        var offset = 0
        out.withUnsafeBytes { bytes in
            while offset < bytes.count {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ready = regularFile ? 1 : poll(&p, 1, 100)
                if ready == 0 || (ready < 0 && errno == EINTR) {
                    if stopFlag.load(ordering: .relaxed) { failed = true; return }   // reader gone quiet at exit
                    continue
                }
                var chunk = regularFile ? bytes.count - offset : min(bytes.count - offset, Int(PIPE_BUF))
                // A pipe's chunk ends at a line's end when one fits: another writer's whole line
                // (a status message on the same pipe) then lands between trace lines, never inside one.
                if offset + chunk < bytes.count,
                   let newline = (offset..<(offset + chunk)).last(where: { bytes[$0] == UInt8(ascii: "\n") }) {
                    chunk = newline + 1 - offset
                }
                let n = Glibc.write(fd, bytes.baseAddress! + offset, chunk)
                if n > 0 { offset += n; continue }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                // EPIPE/EBADF: the reader went away; stop tracing rather than spin or crash.
                failed = true
                return
            }
        }
    }
}

/// Keeps events in memory: the scenario lab's and the demo's merged timeline (public: `LabRun` and
/// `EchoDemo` hand it out). Tests use it too; it is product code, not a test helper.
public final class TraceCollector: TraceSink, Sendable {
    private let storage = Mutex<[TraceEvent]>([])
    private let forward: TraceSink?

    public init(forwardingTo forward: TraceSink? = nil) { self.forward = forward }

    public func emit(_ event: TraceEvent) {
        storage.locked { $0.append(event) }
        forward?.emit(event)
    }

    public func flush() { forward?.flush() }

    public var events: [TraceEvent] { storage.locked { $0 } }
}
