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
    /// Whether events must carry the socket's cookie from the first one on (JSON writes it,
    /// collectors hand events on to who knows). Defaults to true; a text writer, which never
    /// shows it, says false, and trackers then read it only where a sock_diag follow-up will
    /// need it (`SocketTracker.keepCookie`).
    var needsCookies: Bool { get }
}

extension TraceSink {
    public func requestFlush() { flush() }
    public var needsCookies: Bool { true }
}

/// Output format chosen with `--trace`.
public enum TraceFormat: String, Sendable, CaseIterable {
    case text, json, off
}

/// Renders events and writes them to a file descriptor from a background thread.
///
/// Policy (a slow terminal, pipe or file must never stall the echo path):
/// - `emit` renders the event's line into a shared byte buffer under a short lock; write(2)
///   happens on the writer thread, which swaps that buffer for an empty one and writes it. The
///   buffer is bounded in lines (`capacity`) and in bytes (`byteBudget`): under connect churn a
///   queue of 16,384 events took the traced server's peak RSS to 41–50 MiB; 1 MiB of lines keeps
///   it small while a writer that keeps up never drops.
///   Rendering on the emitting thread, not the writer's, is what makes an event cheap: a queued
///   `TraceEvent` (hundreds of bytes, each string retained) was copied in, copied out and
///   destroyed, ~8,000 instructions a connection under connect churn (callgrind), and a pinned
///   server runs both threads on the same CPU anyway.
/// - When the buffer is full the event is dropped and counted. As soon as the writer catches
///   up it writes one warning line `trace: N lines dropped (slow reader)`, so a reader always
///   knows the trace has a gap, and where.
/// - `requestFlush()` (event loops, once per wakeup) only wakes the writer; `flush()` (exit,
///   interactive clients) waits until everything emitted so far is written, at most
///   `flushTimeoutSeconds`, so a stuck reader cannot hang the process at exit.
/// - With `immediate` (an interactive terminal) the writer is woken on every event.
/// @unchecked: immutable apart from the core, whose state sits behind a pthread mutex.
public final class TraceWriter: TraceSink, @unchecked Sendable {
    public let format: TraceFormat
    private let core: TraceWriterCore

    /// - Parameter width: the terminal's columns, to fit text lines to it; nil (pipes, files)
    ///   keeps one full line per event. JSON ignores it.
    public convenience init(format: TraceFormat, fd: Int32, ownsDescriptor: Bool = false, color: Bool, immediate: Bool,
                            baseNs: UInt64 = MonotonicClock.now(), capacity: Int = 16_384, byteBudget: Int = 1 << 20,
                            flushTimeoutSeconds: Double = 5, side: TraceSide = .server, width: Int? = nil) {
        self.init(format: format, fd: fd, ownsDescriptor: ownsDescriptor, color: color, immediate: immediate,
                  baseNs: baseNs, capacity: capacity, byteBudget: byteBudget, flushTimeoutSeconds: flushTimeoutSeconds,
                  side: side, width: width, pageCache: PageCacheRelease())
    }

    /// With a chosen page-cache policy (tests: a threshold of 0 drops from the first window).
    package init(format: TraceFormat, fd: Int32, ownsDescriptor: Bool, color: Bool, immediate: Bool,
                 baseNs: UInt64, capacity: Int, byteBudget: Int, flushTimeoutSeconds: Double, side: TraceSide,
                 width: Int?, pageCache: PageCacheRelease) {
        self.format = format
        core = TraceWriterCore(format: format, fd: fd, ownsDescriptor: ownsDescriptor, color: color,
                               immediate: immediate, baseNs: baseNs, capacity: capacity, byteBudget: byteBudget,
                               flushTimeoutSeconds: flushTimeoutSeconds, side: side, width: width, pageCache: pageCache)
    }

    /// Opens (creating or truncating) a trace file. C: `open(2)`.
    public static func file(path: String, format: TraceFormat) throws -> TraceWriter {
        // "open(PATH): ..." names the file, not just the call.
        let fd = try TextFile.createForWriting(path)
        return TraceWriter(format: format, fd: fd, ownsDescriptor: true, color: false, immediate: false)
    }

    /// Writes what is buffered, stops the writer thread (it closes an owned descriptor).
    deinit { core.shutdown() }

    /// The buffer's bound in lines: events beyond it are dropped and counted.
    public var capacity: Int { core.capacity }
    /// Events dropped so far because the reader was too slow.
    public var droppedCount: Int { core.droppedCount }
    /// The page-cache policy's state (tests; read after `flush()`).
    package var pageCache: PageCacheRelease { core.pageCacheState }
    public func emit(_ event: TraceEvent) { core.emit(event) }
    /// Text lines never show the cookie; JSON has a `cookie` member.
    public var needsCookies: Bool { format != .text }
    public func requestFlush() { core.requestFlush() }
    public func flush() { core.flush() }
}

/// The rendered lines and the writer thread behind `TraceWriter`. The thread owns the I/O.
/// @unchecked: the shared buffer, renderer and flags are guarded by `lock` (a pthread mutex,
/// which TSan sees); `out` and `failed` belong to the writer thread.
final class TraceWriterCore: @unchecked Sendable {
    let format: TraceFormat
    let capacity: Int
    let byteBudget: Int
    private let fd: Int32
    private let ownsDescriptor: Bool
    private let immediate: Bool
    private let flushTimeoutSeconds: Double
    private let side: TraceSide
    @exclusivity(unchecked) private var failed = false                     // writer thread only (or under `lock` once synchronous)
    /// The batch being written: swapped with `pending`, written, emptied, swapped back.
    @exclusivity(unchecked) private var out = TraceBytes(capacity: 64 * 1024)  // writer thread only
    /// A regular file: write(2) never waits for a reader, so a batch goes out in one call
    /// instead of PIPE_BUF chunks after poll().
    private let regularFile: Bool
    /// A regular file's older pages, dropped from the page cache where new ones are expensive.
    @exclusivity(unchecked) private var pageCache: PageCacheRelease   // writer thread only (or under `lock` once synchronous)

    // Shared state, guarded by `lock`.
    // Heap-allocated: pthread objects must not move, and a Swift stored property may.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Rendered lines not yet taken by the writer, and how many.
    @exclusivity(unchecked) private var pending = TraceBytes(capacity: 64 * 1024)
    @exclusivity(unchecked) private var pendingLines = 0
    /// The text renderer: `fitted` remembers what it showed (a terminal's compact layout).
    @exclusivity(unchecked) private var text: TextTraceRenderer
    /// Each socket's repeated columns or members, rendered once (`IdentityFragments`).
    @exclusivity(unchecked) private var identities = IdentityFragments()
    /// JSON: the date and time of day last written (`RFC3339Second`).
    @exclusivity(unchecked) private var second = RFC3339Second()
    /// JSON: strings seen to need no escaping (`PlainStrings`).
    @exclusivity(unchecked) private var plain = PlainStrings()
    @exclusivity(unchecked) private var dropped = 0
    @exclusivity(unchecked) private var droppedTotal = 0
    @exclusivity(unchecked) private var enqueued = 0                       // events accepted so far
    @exclusivity(unchecked) private var written = 0                        // events the writer has finished with
    @exclusivity(unchecked) private var writerSleeping = false
    /// No writer thread could be started: every event is written on the emitting thread, under
    /// `lock`, as it comes.
    @exclusivity(unchecked) private var synchronous = false
    /// `timestampNs` of the event that made the buffer non-empty (the batch's oldest, roughly).
    @exclusivity(unchecked) private var firstPendingNs: UInt64 = 0
    /// A batch: what `requestFlush()` waits for before waking the writer. Each wake-up is a
    /// futex wake, two context switches on the server's CPU and a write(2): with 256 lines or
    /// 5 ms the writer woke ~600 times/s under connect churn (~72,000 lines/s), with 1,024 lines
    /// or 20 ms ~180 times/s (voluntary switches of its thread). 20 ms is still live to the eye;
    /// the stamps are the observations', not the write's.
    static let batchEvents = 1024
    static let batchDelayNs: UInt64 = 20_000_000
    /// ...or 128 KiB of lines (~330 JSON lines): the buffers it swaps stay small (a traced
    /// server's peak RSS holding 1,000 idle connections, 16 MiB at most).
    static let batchBytes = 128 * 1024
    @exclusivity(unchecked) private var writerStarted = false
    @exclusivity(unchecked) private var stopping = false
    /// `stopping`, readable by the writer while it waits for a slow reader without the lock.
    private let stopFlag = Atomic<Bool>(false)
    /// Set by `emit`, cleared when the writer takes the buffer: lets `requestFlush()` (every loop
    /// wakeup, mostly with nothing to write) return after one atomic load instead of taking a
    /// lock that every loop shares.
    private let unflushed = Atomic<Bool>(false)
    @exclusivity(unchecked) private var thread: ThreadHandle?

    init(format: TraceFormat, fd: Int32, ownsDescriptor: Bool, color: Bool, immediate: Bool,
         baseNs: UInt64, capacity: Int, byteBudget: Int, flushTimeoutSeconds: Double, side: TraceSide, width: Int?,
         pageCache: PageCacheRelease) {
        self.format = format
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
        self.immediate = immediate
        self.capacity = max(1, capacity)
        self.byteBudget = max(4096, byteBudget)
        self.flushTimeoutSeconds = flushTimeoutSeconds
        self.side = side
        text = TextTraceRenderer(baseNs: baseNs, color: color, width: width)
        var status = stat()
        regularFile = fstat(fd, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
        self.pageCache = pageCache
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
    }

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
        // The writer is gone (joined, or never started): its page dropper ends before the
        // descriptor can be closed.
        pthread_mutex_lock(lock)
        pageCache.stop()
        pthread_mutex_unlock(lock)
    }

    var droppedCount: Int {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return droppedTotal
    }

    /// Read under `lock` after a `flush()`: the writer changes it only while writing, outside the
    /// lock, so a reader must know the writer is idle (tests do).
    var pageCacheState: PageCacheRelease {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return pageCache
    }

    func emit(_ event: TraceEvent) {
        guard format != .off else { return }
        pthread_mutex_lock(lock)
        if synchronous {
            render(event, into: &pending)
            write(&pending)
            pthread_mutex_unlock(lock)
            return
        }
        // Full: in lines, or in bytes (the budget is checked before rendering, so a line may
        // overrun it by its own length, never by more).
        if pendingLines >= capacity || pending.count >= byteBudget {
            dropped += 1
            droppedTotal += 1
            pthread_mutex_unlock(lock)
            return
        }
        render(event, into: &pending)
        pendingLines += 1
        enqueued += 1
        unflushed.store(true, ordering: .relaxed)
        let start = !writerStarted
        if start { writerStarted = true }
        // Batch: wake the writer per event only for a terminal or when a quarter full.
        let signal = writerSleeping && (immediate || pendingLines >= capacity / 4 || pending.count >= byteBudget / 4)
        if pendingLines == 1 { firstPendingNs = event.timestampNs }
        if signal { writerSleeping = false; pthread_cond_signal(wake) }
        pthread_mutex_unlock(lock)
        if start { startWriter() }
    }

    /// Wakes the writer when a batch is worth a write: `batchEvents` lines, or the oldest
    /// line is `batchDelayNs` old, or a drop is to be reported; never blocks on I/O.
    /// Waking it on every loop wakeup (the earlier policy) cost a futex wake, a context switch
    /// and a write(2) per few events under connect churn: ~15% of the traced server's samples
    /// in `finish_task_switch` alone.
    func requestFlush() {
        guard unflushed.load(ordering: .relaxed) else { return }
        pthread_mutex_lock(lock)
        if writerSleeping && (dropped > 0 || pendingLines >= Self.batchEvents || pending.count >= Self.batchBytes
                              || (pendingLines > 0 && MonotonicClock.now() &- firstPendingNs >= Self.batchDelayNs)) {
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
        var deadline = timespec.realtimeDeadline(afterNanoseconds: UInt64(max(0, flushTimeoutSeconds) * 1e9))
        while written < target || dropped > 0 {
            if writerSleeping { writerSleeping = false; pthread_cond_signal(wake) }
            if pthread_cond_timedwait(done, lock, &deadline) == ETIMEDOUT { return }
        }
    }

    private func startWriter() {
        do {
            thread = try ThreadHandle { [self] in writerLoop() }
        } catch {
            // No thread: write on the callers' threads from now on, starting with what is pending.
            pthread_mutex_lock(lock)
            synchronous = true
            write(&pending)
            written += pendingLines
            pendingLines = 0
            pthread_mutex_unlock(lock)
        }
    }

    private func writerLoop() {
        pthread_mutex_lock(lock)
        while true {
            while pendingLines == 0 && dropped == 0 {
                if stopping { pthread_mutex_unlock(lock); return }
                writerSleeping = true
                pthread_cond_broadcast(done)
                // Wake at least every 50 ms: a server that emits a few events and then sits
                // idle (no loop wakeups, so no requestFlush) still gets them out promptly.
                var deadline = timespec.realtimeDeadline(afterNanoseconds: 50_000_000)
                _ = pthread_cond_timedwait(wake, lock, &deadline)
                writerSleeping = false
            }
            // The gap's warning goes right after the last line before it.
            if dropped > 0 {
                render(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .warning,
                                  cause: "trace: \(dropped) lines dropped (slow reader)"), into: &pending)
                dropped = 0
            }
            swap(&pending, &out)
            let count = pendingLines
            pendingLines = 0
            unflushed.store(false, ordering: .relaxed)
            pthread_mutex_unlock(lock)

            write(&out)

            pthread_mutex_lock(lock)
            written += count
            if pendingLines == 0 { pthread_cond_broadcast(done) }
        }
    }

    /// Appends the event's line. Under `lock`: the text renderer's compact layout has state.
    private func render(_ event: TraceEvent, into bytes: inout TraceBytes) {
        if format == .json {
            JSONTraceRenderer.render(event, into: &bytes, identities: &identities, second: &second, plain: &plain)
        } else if text.width == nil {
            Self.render(event, with: &text, into: &bytes, identities: &identities)
        } else {
            bytes.append(text.fitted(event))   // a terminal: wrapped to its width, not a hot path
        }
        bytes.append(byte: UInt8(ascii: "\n"))
    }

    /// `renderer.render`, the renderer borrowed in place: called on the stored property, the
    /// renderer was copied out for the call, its dictionary retained and released every line.
    private static func render(_ event: TraceEvent, with renderer: inout TextTraceRenderer, into bytes: inout TraceBytes,
                               identities: inout IdentityFragments) {
        renderer.render(event, into: &bytes, identities: &identities)
    }

    /// Writes `bytes` and empties them, in chunks of at most PIPE_BUF after poll(POLLOUT): a pipe
    /// or terminal that reports POLLOUT takes that much without blocking, so this thread never
    /// sits in a write(2) it cannot leave, and `shutdown()` can always stop it.
    private func write(_ bytes: inout TraceBytes) {
        guard !bytes.isEmpty else { return }
        defer { bytes.removeAll(keepingCapacity: bytes.count <= 1 << 20) }
        guard !failed else { return }
        var offset = 0
        bytes.withUnsafeBytes { bytes in
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
                // What the call costs this thread decides whether to drop pages, once: no clock
                // reads after that (two system calls a write).
                let measure = regularFile && !pageCache.dropping
                let cpuBefore = measure ? MonotonicClock.threadCPUTime() : 0
                let n = Glibc.write(fd, bytes.baseAddress! + offset, chunk)
                if n > 0 && regularFile {
                    pageCache.wrote(n, cpuNs: measure ? MonotonicClock.threadCPUTime() &- cpuBefore : 0, to: fd)
                }
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
