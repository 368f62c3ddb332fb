import Glibc
import SocketKit
import TCPTrace

/// One thread's epoll loop and the connections it owns. Every loop watches the server's one
/// listener (EPOLLEXCLUSIVE) and keeps what it accepts unless another loop owns fewer
/// connections (`SharedListener`, `ConnectionHandoff`).
///
/// Level-triggered. State is read with TCP_INFO only where it can change (accept, recv()=0,
/// EPOLLRDHUP/HUP/ERR, shutdown, errors) and sampled on a backoff while a socket sits in a
/// transient state, so plain data traffic pays nothing for tracing.
/// @unchecked: created on the main thread, then run by exactly one thread; other loops touch
/// only `handoff` (locked) and `wakeup` (an eventfd), which are Sendable themselves.
final class EchoEventLoop: @unchecked Sendable {
    private static let wakeToken: UInt64 = 0
    private static let listenerToken: UInt64 = 1

    let epoll: Epoll
    let wakeup: WakeupFD
    // The loop's state is touched by its own thread only. Swift's dynamic exclusivity checks
    // on these class properties (swift_beginAccess + a TLS lookup per access) measured ~30%
    // of the server's user-space time under perf; they cannot fail here, so they are off.
    /// nil once this loop stopped accepting (drain).
    @exclusivity(unchecked) private var listener: SharedListener?
    /// Connections other loops accepted for this one, and how many this loop owns.
    let handoff = ConnectionHandoff()
    /// Every loop of the server (this one included), to pick the least loaded for a new
    /// connection; set once by `EchoServer.bind` before any loop runs. Unowned: the server owns
    /// the loops.
    var peers: [Peer] = []
    struct Peer {
        unowned let loop: EchoEventLoop
    }
    @exclusivity(unchecked) private var slots: [EchoConnection?] = []
    @exclusivity(unchecked) private var freeSlots: [Int] = []
    @exclusivity(unchecked) private var timed: Set<Int> = []
    /// Echoed bytes not yet added to the shared stats: one atomic add per wakeup, not per send
    /// (the counter's cache line is shared by every loop).
    @exclusivity(unchecked) private var unreportedBytes: UInt64 = 0
    private let readBuffer: UnsafeMutableRawBufferPointer
    private let config: EchoServerConfiguration
    private let tracer: StateTracer?
    private let diag: SockDiag?
    private let stats: EchoServerStats
    private let control: EchoServer.Control
    private var acceptPausedUntil: UInt64?
    private var drainDeadline: UInt64?
    private var nextIdleScan: UInt64 = 0
    /// Kernel tracepoint hook (`--kernel-trace`): this loop's sockets with kernel changes waiting; nil when off.
    private let kernelMailbox: KernelMailbox?

    init(listener: SharedListener, config: EchoServerConfiguration, tracer: StateTracer?,
         stats: EchoServerStats, control: EchoServer.Control) throws {
        epoll = try Epoll(capacity: 512)
        wakeup = try WakeupFD()
        self.listener = listener
        self.config = config
        self.tracer = tracer
        self.stats = stats
        self.control = control
        diag = tracer == nil ? nil : try? SockDiag()
        readBuffer = .allocate(byteCount: 64 * 1024, alignment: 16)
        kernelMailbox = tracer?.kernel == nil ? nil : KernelMailbox(wake: { [wakeup] in wakeup.wake() })
        try epoll.add(wakeup.fd, events: .readable, token: Self.wakeToken)
        try epoll.add(listener.socket.fd, events: Self.listenerEvents, token: Self.listenerToken)
        listener.join()
    }

    deinit { readBuffer.deallocate() }

    func run() {
        // The LISTEN event from init must not wait in the buffer for the first connection: a
        // pipe reader (a test, `| jq`) learns the port from it.
        tracer?.sink.flush()
        while true {
            // Kernel changes routed to this loop's connections while it worked: applied before
            // it sleeps (posts from this thread do not wake it).
            kernelMailbox?.deliver()
            let now = MonotonicClock.now()
            let timeout = timeoutMillis(now: now)
            do {
                _ = try epoll.wait(timeoutMillis: timeout) { token, events in
                    switch token {
                    case Self.wakeToken:
                        wakeup.drain()
                        for socket in handoff.take() { register(socket) }
                    case Self.listenerToken: acceptAll()
                    default: handle(slot: Int(token - 2), events: events)
                    }
                }
            } catch {
                tracer?.sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: 0,
                                             kind: .error, cause: "\(error)"))
            }
            if unreportedBytes > 0 {
                stats.bytesEchoed.add(unreportedBytes, ordering: .relaxed)
                unreportedBytes = 0
            }
            runTimers(now: MonotonicClock.now())
            if control.stopRequested && drainDeadline == nil { beginDrain() }
            if control.abortRequested {
                closeAll(cause: "second signal: closed by the server")
                break
            }
            // Before the next sleep: trace lines must not wait for the next connection. Only a
            // request: the writer thread does the write(2), never the echo path.
            tracer?.sink.requestFlush()
            if let deadline = drainDeadline {
                if stats.open.load(ordering: .relaxed) == 0 || activeCount == 0 { break }
                if MonotonicClock.now() >= deadline { closeAll(cause: "drain timeout: closed by the server"); break }
            }
        }
        // Handed over after we stopped: closed as any connection arriving during the drain.
        for socket in handoff.close() { register(socket) }
        tracer?.sink.flush()
    }

    private var activeCount: Int { slots.count - freeSlots.count }

    /// One idle loop woken per new connection, not every loop. EPOLLEXCLUSIVE cannot be changed
    /// with EPOLL_CTL_MOD: pausing removes and re-adds.
    private static let listenerEvents: EpollEvents = [.readable, .exclusive]

    // MARK: Accept

    private func acceptAll() {
        guard let listener else { return }
        for _ in 0..<64 {
            do {
                guard case .processed(let socket) = try listener.socket.accept() else { return }
                dispatch(socket)
            } catch let error as SystemCallError {
                switch error.errno {
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors: the pending connection stays in the backlog and would
                    // wake us forever. Stop watching the listener for 100 ms instead of spinning.
                    stats.errors.add(1, ordering: .relaxed)
                    listener.acceptFailed(error, detail: "; pausing accepts for 100 ms")
                    epoll.remove(listener.socket.fd)
                    acceptPausedUntil = MonotonicClock.now() + 100_000_000
                    return
                case ECONNABORTED, EPROTO, EPERM:
                    continue   // that connection died in the queue; the next may be fine
                case EINVAL where listener.isShutDown:
                    return   // another loop began the drain: accepting is over
                default:
                    stats.errors.add(1, ordering: .relaxed)
                    listener.acceptFailed(error)
                    return
                }
            } catch {
                return
            }
        }
    }

    /// This loop keeps the connection unless another owns fewer (ties stay here: no wake-up).
    /// A loop that has already stopped refuses it, and it stays here (closed as during a drain).
    private func dispatch(_ socket: Socket) {
        // One loop (a server pinned to one CPU) has no peer to compare with: the scan took a
        // strong reference from each peer's unowned one, atomics a connection for nothing.
        if peers.count > 1, let target = lessLoadedPeer() {
            target.handoff.assigned.add(1, ordering: .relaxed)
            if target.handoff.offer(socket) {
                target.wakeup.wake()
                return
            }
            target.handoff.assigned.subtract(1, ordering: .relaxed)
        }
        handoff.assigned.add(1, ordering: .relaxed)
        register(socket)
    }

    /// The loop owning the fewest connections, if that is fewer than this one owns.
    private func lessLoadedPeer() -> EchoEventLoop? {
        var target: EchoEventLoop?
        var least = handoff.assigned.load(ordering: .relaxed)
        for peer in peers where peer.loop !== self {
            let load = peer.loop.handoff.assigned.load(ordering: .relaxed)
            if load < least { least = load; target = peer.loop }
        }
        return target
    }

    /// Takes a connection assigned to this loop (`dispatch` counted it in `handoff.assigned`).
    private func register(_ socket: Socket) {
        var registered = false
        defer { if !registered { handoff.assigned.subtract(1, ordering: .relaxed) } }
        let now = MonotonicClock.now()
        let refusal = drainDeadline != nil ? "server is shutting down: closing the new connection"
            : stats.open.load(ordering: .relaxed) >= config.maxConnections
            ? "connection limit \(config.maxConnections) reached: closing the new connection" : nil
        // Counted open before its accept is traced: the trace writer may print ESTABLISHED at
        // once, and whoever acts on it (a Ctrl-C, whose "draining N connections" reads this
        // count) must find the connection counted.
        if refusal == nil { stats.open.add(1, ordering: .relaxed) }
        let socket = TracedSocket(accepted: socket, tracer: tracer, diag: diag, mailbox: kernelMailbox)
        if let refusal {
            stats.refused.add(1, ordering: .relaxed)
            socket.warning(refusal)
            socket.close(cause: "close() over the connection limit")
            return
        }
        let slot = freeSlots.popLast() ?? { slots.append(nil); return slots.count - 1 }()
        let connection = EchoConnection(socket: socket, slot: slot, now: now)
        do {
            try epoll.add(socket.fd, events: [.readable, .readHangup], token: UInt64(slot + 2))
        } catch {
            socket.failed(error as? SystemCallError, during: "epoll_ctl(ADD)")
            stats.open.subtract(1, ordering: .relaxed)
            freeSlots.append(slot)
            socket.close(cause: "close() after epoll_ctl failed")
            return
        }
        slots[slot] = connection
        registered = true
        stats.accepted.add(1, ordering: .relaxed)
        schedule(connection, now: now)
    }

    // MARK: Connection events

    private func handle(slot: Int, events: EpollEvents) {
        guard slot < slots.count, let connection = slots[slot] else { return }
        // Only the idle timeout needs the time of each event: no clock read otherwise.
        if config.idleTimeoutSeconds != nil { connection.lastActivityNs = MonotonicClock.now() }
        if events.contains(.error) {
            fail(connection, error: nil, cause: "EPOLLERR")
            return
        }
        if events.contains(.readable) || events.contains(.readHangup) || events.contains(.hangup) {
            if !connection.peerClosed && !connection.readPaused { readAvailable(connection) }
            guard slots[slot] != nil else { return }
            if events.contains(.hangup) && !connection.peerClosed {
                fail(connection, error: nil, cause: "EPOLLHUP")
                return
            }
        }
        if events.contains(.writable) { flush(connection) }
    }

    private func readAvailable(_ connection: EchoConnection) {
        for _ in 0..<4 {
            let result: IOResult<Int>
            do {
                result = try connection.socket.receive(into: readBuffer)
            } catch let error as SystemCallError {
                fail(connection, error: error, cause: "recv")
                return
            } catch { return }
            guard case .processed(let count) = result else { return }
            if count == 0 {
                peerFinished(connection)
                return
            }
            echo(connection, UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
            guard slots[connection.slot] != nil else { return }
            if connection.pendingCount >= config.pendingLimit {
                // Backpressure: the peer is not reading its echo. Stop reading from it until
                // the queue drains, so memory stays bounded by pendingLimit per connection.
                connection.readPaused = true
                connection.socket.verboseNote("backpressure: \(connection.pendingCount) bytes queued, pausing reads")
                updateInterest(connection)
                return
            }
            if count < readBuffer.count { return }
        }
    }

    private func echo(_ connection: EchoConnection, _ bytes: UnsafeRawBufferPointer) {
        if connection.pendingCount > 0 {
            connection.queue(bytes)
            return
        }
        do {
            var sent = 0
            if case .processed(let n) = try connection.socket.send(bytes) { sent = n }
            account(connection, sent)
            if sent < bytes.count {
                connection.queue(UnsafeRawBufferPointer(rebasing: bytes[sent...]))
                updateInterest(connection)
            }
        } catch let error as SystemCallError {
            fail(connection, error: error, cause: "send")
        } catch {}
    }

    private func flush(_ connection: EchoConnection) {
        while connection.pendingCount > 0 {
            do {
                let result = try connection.pending.withUnsafeBytes { all in
                    try connection.socket.send(UnsafeRawBufferPointer(rebasing: all[connection.pendingStart...]))
                }
                guard case .processed(let n) = result else { break }
                account(connection, n)
                connection.consumed(n)
            } catch let error as SystemCallError {
                fail(connection, error: error, cause: "send")
                return
            } catch { return }
        }
        if connection.pendingCount == 0 && connection.peerClosed && !config.withholdClose {
            finish(connection, cause: "shutdown(SHUT_WR) after echoing every byte")
            return
        }
        if connection.readPaused && connection.pendingCount < config.pendingLimit / 2 {
            connection.readPaused = false
        }
        updateInterest(connection)
    }

    private func account(_ connection: EchoConnection, _ count: Int) {
        guard count > 0 else { return }
        connection.bytesEchoed += UInt64(count)
        if connection.peerClosed { connection.bytesAfterPeerFIN += UInt64(count) }
        unreportedBytes &+= UInt64(count)
    }

    /// Watches for what the connection needs next. A failed epoll_ctl(MOD) would leave it
    /// without EPOLLOUT and its echo stalled for ever: the connection is closed, the error
    /// traced. Returns false then.
    @discardableResult
    private func updateInterest(_ connection: EchoConnection) -> Bool {
        var events: EpollEvents = []
        if !connection.peerClosed && !connection.readPaused { events.insert([.readable, .readHangup]) }
        if connection.pendingCount > 0 { events.insert(.writable) }
        do {
            try epoll.modify(connection.socket.fd, events: events, token: UInt64(connection.slot + 2))
        } catch {
            fail(connection, error: error as? SystemCallError, cause: "epoll_ctl(MOD)")
            return false
        }
        connection.wantsWrite = events.contains(.writable)
        return true
    }

    /// recv() returned 0: the peer's FIN. Echo what is still queued, then close our side.
    private func peerFinished(_ connection: EchoConnection) {
        connection.peerClosed = true
        // Nothing left to echo: close now. No epoll_ctl(MOD) first, the close ends the interest
        // (the C reference makes no such call; one syscall of ~4 the untraced server made
        // beyond it per connection under connect churn).
        if connection.pendingCount == 0 && !config.withholdClose {
            finish(connection, cause: "shutdown(SHUT_WR): peer closed, nothing left to echo")
            return
        }
        schedule(connection, now: MonotonicClock.now())
        guard updateInterest(connection) else { return }
        if connection.pendingCount > 0 {
            connection.socket.info("peer sent FIN with \(connection.pendingCount) echo bytes still queued: sending them first (half-close)")
        }
    }

    /// Our side is done: FIN via shutdown(SHUT_WR) (the fd stays, so the state can be read
    /// once more: LAST_ACK or already CLOSED), then close().
    private func finish(_ connection: EchoConnection, cause: String) {
        if !connection.shutDown {
            connection.shutDown = true
            var text = cause
            if connection.bytesAfterPeerFIN > 0 { text += " (\(connection.bytesAfterPeerFIN) bytes echoed after the peer's FIN)" }
            // A failed shutdown (the peer reset meanwhile) needs no handling: close() follows.
            try? connection.socket.sendFIN(cause: text)
        }
        release(connection, cause: "close()")
    }

    /// A failed call, EPOLLERR or EPOLLHUP (`error` nil: the pending SO_ERROR): traced, closed.
    private func fail(_ connection: EchoConnection, error: SystemCallError?, cause: String) {
        stats.errors.add(1, ordering: .relaxed)
        let lost = connection.pendingCount
        let error = connection.socket.failed(error, during: cause,
                                             detail: lost > 0 ? "; \(lost) echo bytes could not be delivered" : "")
        release(connection, cause: "close() after \(error.map { Errno.name($0.errno) } ?? cause)")
    }

    private func release(_ connection: EchoConnection, cause: String) {
        handoff.assigned.subtract(1, ordering: .relaxed)
        slots[connection.slot] = nil
        freeSlots.append(connection.slot)
        timed.remove(connection.slot)
        stats.open.subtract(1, ordering: .relaxed)
        stats.closed.add(1, ordering: .relaxed)
        // epoll_ctl(DEL) before close(): close() ends the registration only with the last
        // reference to the open file, and a forked child holds one until its exec (posix_spawn
        // of tcpdump by the lab; any child of a process embedding the server). The dead socket's
        // level-triggered EPOLLHUP then came with the token of the slot the next connection took
        // and closed that one unechoed (CI, 2026-12-04; StaleEpollEventTests). The syscall saved
        // per connection is not worth a lost echo.
        epoll.remove(connection.socket.fd)
        connection.socket.close(cause: cause)
    }

    // MARK: Timers

    /// Connections in a transient state or in CLOSE_WAIT get a deadline on the timer list.
    private func schedule(_ connection: EchoConnection, now: UInt64) {
        guard connection.socket.isTraced else { return }
        let deadline = connection.socket.nextCheck(now: now)
        connection.nextSampleNs = deadline
        if deadline != nil { timed.insert(connection.slot) } else { timed.remove(connection.slot) }
    }

    private func runTimers(now: UInt64) {
        if let until = acceptPausedUntil, now >= until, let listener {
            acceptPausedUntil = nil
            do {
                try epoll.add(listener.socket.fd, events: Self.listenerEvents, token: Self.listenerToken)
            } catch {
                // Not watching the listener would stop this loop accepting, silently: try again.
                stats.errors.add(1, ordering: .relaxed)
                let text = "\(error): the listener is not watched after the pause; retrying in 100 ms"
                listener.warning(text)
                SignalSafeOutput.line("EchoServer: " + text)
                acceptPausedUntil = now + 100_000_000
            }
        }
        for slot in timed {
            guard let connection = slots[slot], let due = connection.nextSampleNs, now >= due else { continue }
            let detail = connection.pendingCount > 0 ? "\(connection.pendingCount) echo bytes still queued for a peer that is not reading" : nil
            connection.socket.sample(cause: "sampled while in \(connection.socket.state?.name ?? "?")", now: now, closeWaitDetail: detail)
            schedule(connection, now: now)
        }
        if let idle = config.idleTimeoutSeconds, now >= nextIdleScan {
            let limit = UInt64(idle * 1e9)
            nextIdleScan = now + min(1_000_000_000, max(limit / 4, 1_000_000))
            for case let connection? in slots where now - connection.lastActivityNs >= limit {
                // The time of the last event is when this loop *handled* one, so it lags when
                // the loop does (a starved host, a long batch of accepts): the peer's bytes or
                // FIN may be waiting unread. That is activity, not idleness, and closing now
                // would lose those bytes (close() with unread input sends RST). The next wait
                // reports them. A peer paused for backpressure is not read at all: its clock
                // stays as it is.
                if !connection.peerClosed && !connection.readPaused,
                   (try? connection.socket.socket.hasUnreadInput()) ?? true {
                    connection.lastActivityNs = now
                    continue
                }
                stats.idleClosed.add(1, ordering: .relaxed)
                connection.socket.warning("idle for \(TextTraceRenderer.duration(now - connection.lastActivityNs)): closing (--idle-timeout)")
                connection.peerClosed = true
                finish(connection, cause: "shutdown(SHUT_WR): idle timeout")
            }
        }
    }

    private func timeoutMillis(now: UInt64) -> Int32 {
        var next: UInt64 = .max
        for slot in timed { if let due = slots[slot]?.nextSampleNs { next = min(next, due) } }
        if let paused = acceptPausedUntil { next = min(next, paused) }
        if config.idleTimeoutSeconds != nil { next = min(next, nextIdleScan) }
        if let deadline = drainDeadline { next = min(next, deadline) }
        if next == .max { return -1 }
        if next <= now { return 0 }
        // epoll_wait counts milliseconds: sub-millisecond samples poll with timeout 0.
        let delta = next - now
        return delta < 1_000_000 ? 0 : Int32(min(delta / 1_000_000, 60_000))
    }

    // MARK: Stop

    private func beginDrain() {
        drainDeadline = MonotonicClock.now() + UInt64(config.drainTimeoutSeconds * 1e9)
        guard let listener else { return }
        self.listener = nil
        // Paused for EMFILE, the listener is not in this epoll: DEL then fails harmlessly (ENOENT).
        acceptPausedUntil = nil
        epoll.remove(listener.socket.fd)
        listener.leave()
    }

    private func closeAll(cause: String) {
        for case let connection? in slots {
            connection.peerClosed = true
            connection.socket.warning(cause)
            finish(connection, cause: "shutdown(SHUT_WR): \(cause)")
        }
    }
}
