import Glibc
import Synchronization

/// Where trace events go. Implementations are thread-safe: the server's loops, the sock_diag
/// follower and the client may emit concurrently.
public protocol TraceSink: AnyObject, Sendable {
    func emit(_ event: TraceEvent)
    /// Pushes buffered output out; called by event loops once per wakeup, and at exit.
    func flush()
}

/// Output format chosen with `--trace`.
public enum TraceFormat: String, Sendable, CaseIterable {
    case text, json, off
}

/// Renders events and writes them to a file descriptor, buffered.
///
/// Lines are rendered into one buffer under a lock and written on `flush()` or when the buffer
/// passes `flushThreshold`, so the echo path pays for one write(2) per loop iteration at most.
/// With `immediate` (an interactive terminal) every event is written at once.
public final class TraceWriter: TraceSink, @unchecked Sendable {
    private struct State {
        var buffer: [UInt8] = []
        var text: TextTraceRenderer
        var failed = false
    }

    public let format: TraceFormat
    private let fd: Int32
    private let ownsDescriptor: Bool
    private let immediate: Bool
    private let flushThreshold = 64 * 1024
    private let state: Mutex<State>

    public init(format: TraceFormat, fd: Int32, ownsDescriptor: Bool = false, color: Bool, immediate: Bool,
                baseNs: UInt64 = MonotonicClock.now()) {
        self.format = format
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
        self.immediate = immediate
        state = Mutex(State(text: TextTraceRenderer(baseNs: baseNs, color: color)))
    }

    /// Opens (creating or truncating) a trace file. C: `open(2)`.
    public static func file(path: String, format: TraceFormat) throws -> TraceWriter {
        let fd = try syscall("open") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        return TraceWriter(format: format, fd: fd, ownsDescriptor: true, color: false, immediate: false)
    }

    deinit {
        flush()
        if ownsDescriptor { Glibc.close(fd) }
    }

    public func emit(_ event: TraceEvent) {
        guard format != .off else { return }
        state.withLock { state in
            let line = format == .json ? JSONTraceRenderer.render(event) : state.text.render(event)
            state.buffer.append(contentsOf: line.utf8)
            state.buffer.append(UInt8(ascii: "\n"))
            if immediate || state.buffer.count >= flushThreshold { write(&state) }
        }
    }

    public func flush() {
        state.withLock { write(&$0) }
    }

    private func write(_ state: inout State) {
        guard !state.buffer.isEmpty else { return }
        defer { state.buffer.removeAll(keepingCapacity: true) }
        guard !state.failed else { return }
        var offset = 0
        state.buffer.withUnsafeBytes { bytes in
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n > 0 { offset += n; continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && errno == EAGAIN {
                    // A non-blocking stderr that is full: wait for room rather than lose lines.
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 100)
                    continue
                }
                // EPIPE/EBADF: the reader went away; stop tracing rather than spin or crash.
                state.failed = true
                return
            }
        }
    }
}

/// Keeps events in memory: for tests, the scenario lab and the demo's merged timeline.
public final class TraceCollector: TraceSink, @unchecked Sendable {
    private let storage = Mutex<[TraceEvent]>([])
    private let forward: TraceSink?

    public init(forwardingTo forward: TraceSink? = nil) { self.forward = forward }

    public func emit(_ event: TraceEvent) {
        storage.withLock { $0.append(event) }
        forward?.emit(event)
    }

    public func flush() { forward?.flush() }

    public var events: [TraceEvent] { storage.withLock { $0 } }
}
