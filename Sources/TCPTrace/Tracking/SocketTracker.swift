import SocketKit

/// Follows one socket's TCP state and turns each change into a trace event.
///
/// Owned by one thread (the socket's event loop) until `closed(cause:)`, then by the
/// `SockDiagFollower`. Between two observations it fills in the states RFC 9293 says were
/// crossed, labelled `inferred`; a transition the RFC does not allow is flagged, not rewritten.
/// @unchecked: one owner at a time, handed over once (loop → follower queue in `closed`, after
/// the loop's last use); kernel changes reach it through its link's locked inbox, not directly.
/// Its stored properties are `@exclusivity(unchecked)` for the same reason: one owner at a time
/// cannot overlap its own accesses, and the run-time check on each one (`swift_beginAccess`,
/// ~15 a kernel change) was ~7% of a traced server's instructions under connect churn.
public final class SocketTracker: @unchecked Sendable {
    public let tracer: StateTracer
    public let conn: Int
    @exclusivity(unchecked) public private(set) var local: SocketAddress? { didSet { localText = local.map(tracer.localText) } }
    @exclusivity(unchecked) public private(set) var peer: SocketAddress? { didSet { peerText = peer?.description } }
    /// Rendered once: every event carries both addresses (inet_ntop + formatting per event
    /// measured ~6% of the traced server's CPU under connection churn).
    @exclusivity(unchecked) private var localText: String?
    @exclusivity(unchecked) private var peerText: String?
    @exclusivity(unchecked) public private(set) var cookie: UInt64?
    /// The last state the trace reached (observed or inferred).
    @exclusivity(unchecked) public private(set) var state: TCPState?
    @exclusivity(unchecked) public private(set) var lastInfo: TCPInfo?
    /// When `state` was entered, if that moment was observed.
    @exclusivity(unchecked) private var enteredNs: UInt64?
    @exclusivity(unchecked) private var stateWasObserved = false
    @exclusivity(unchecked) public private(set) var context = TCPStateMachine.Context()
    private let diag: SockDiag?
    @exclusivity(unchecked) private var closeWaitWarned = false
    /// Transient-state sampling backoff.
    @exclusivity(unchecked) private var sampleDelayNs: UInt64 = 0
    @exclusivity(unchecked) public private(set) var fdClosed = false
    /// TCPTimeWaitOverflow when we sent our first FIN (see `checkSkippedTimeWait`).
    @exclusivity(unchecked) private var timeWaitOverflowsAtFIN: UInt64?
    /// The kernel tracepoint source, when on (nil: no cost at all on any path).
    let kernel: KernelLink?
    /// We sent a FIN ourselves (shutdown or close), whoever closed first.
    @exclusivity(unchecked) public private(set) var sentFIN = false
    /// The program saw the peer's FIN (recv() = 0, or CLOSE_WAIT read before our own FIN).
    @exclusivity(unchecked) public private(set) var peerFINSeen = false
    /// At least one state event went out for this socket (observed, inferred or the kernel's).
    @exclusivity(unchecked) public private(set) var hasEmittedState = false
    /// CLOCK_MONOTONIC of the last reading (tcp_info or sock_diag): a change seen by the next
    /// reading happened after it. nil until a reading, or a fresh socket's creation, bounds it.
    @exclusivity(unchecked) private var lastReadingNs: UInt64?
    /// The reading before the current one: the start of the interval a new state is dated in.
    @exclusivity(unchecked) private var intervalStartNs: UInt64?
    /// When the call that sends our FIN began: FIN_WAIT_1/LAST_ACK cannot be earlier.
    @exclusivity(unchecked) private var finCallNs: UInt64?
    /// When the kernel's last change applied to this socket happened (its tracepoint timestamp).
    @exclusivity(unchecked) var lastKernelChangeNs: UInt64 = 0

    init(tracer: StateTracer, conn: Int, initial: TCPState?, diag: SockDiag?, mailbox: KernelMailbox? = nil) {
        self.tracer = tracer
        self.conn = conn
        self.diag = diag
        state = initial
        // A fresh socket (CLOSED) has no history before now; an accepted one does.
        if initial == .closed { lastReadingNs = MonotonicClock.now() }
        kernel = tracer.kernel.map { KernelLink(source: $0, mailbox: mailbox, diag: diag) }
    }

    /// Learns the socket's addresses, and its cookie when the sink shows it (after
    /// bind/connect/accept; otherwise `keepCookie` reads it before it is needed).
    public func attach(_ socket: Socket) {
        local = try? socket.localAddress()
        peer = try? socket.peerAddress()
        if tracer.eagerCookies { cookie = try? socket.cookie() }
        if kernel != nil { registerWithKernel() }
    }

    /// Reads the cookie, if not read yet, when sock_diag may have to find this socket later:
    /// called before each call that sends our FIN (`closing`: close(), the fd's last moment).
    /// A lookup without it matches the 4-tuple only, and after this socket is gone a new
    /// connection on the same tuple (loopback reuses them at once) would pass for it. And a
    /// TIME_WAIT mini-socket carries the cookie only if it existed before `tcp_time_wait()`.
    /// So it is skipped only when no lookup can follow: CLOSED or TIME_WAIT (nothing left to
    /// follow), and, for a shutdown(), CLOSE_WAIT or LAST_ACK (no TIME_WAIT on that path; the
    /// close() that ends a LAST_ACK reads it then).
    func keepCookie(of socket: Socket, closing: Bool) {
        guard cookie == nil else { return }
        switch state {
        case .closed?, .timeWait?: return
        case .closeWait?, .lastAck?: if !closing { return }
        default: break
        }
        cookie = try? socket.cookie()
    }

    public func attach(local: SocketAddress?, peer: SocketAddress?, cookie: UInt64?) {
        self.local = local ?? self.local
        self.peer = peer ?? self.peer
        self.cookie = cookie ?? self.cookie
        if kernel != nil { registerWithKernel() }
    }

    // MARK: Context from the program's own calls and results

    /// We called shutdown(SHUT_WR) or close(): our FIN is on its way.
    public func noteOurFIN() {
        sentFIN = true
        if !context.peerClosedFirst { context.weClosedFirst = true }
    }

    /// Call just before shutdown(SHUT_WR)/close() sends our FIN. For an active close it notes
    /// the kernel's TIME_WAIT overflow count (~20 µs): on loopback the whole close can finish
    /// inside the call, so a baseline taken afterwards could already include our own overflow.
    public func willSendFIN() {
        // A close() after shutdown(SHUT_WR) sends no FIN: the bound stays the call that did
        // (and no clock is read, once a connection under churn).
        guard !sentFIN else { return }
        finCallNs = MonotonicClock.now()
        guard !context.peerClosedFirst, timeWaitOverflowsAtFIN == nil else { return }
        timeWaitOverflowsAtFIN = KernelCounters.timeWaitOverflows()
    }

    /// recv() returned 0 or EPOLLRDHUP: the peer's FIN arrived.
    public func notePeerFIN() {
        peerFINSeen = true
        if !context.weClosedFirst { context.peerClosedFirst = true }
    }

    /// A reset was sent (SO_LINGER 0) or received (ECONNRESET, ECONNREFUSED).
    public func noteReset() { context.reset = true }

    // MARK: Observations

    /// Reads TCP_INFO from `socket` and records what it shows. Returns the kernel's state.
    @discardableResult
    public func observe(_ socket: Socket, cause: @autoclosure () -> String) -> TCPState? {
        if let kernel, isKernelLinked, !kernel.source.tracepoint.hasLostRecords {
            // The kernel reports every transition of this socket and none was dropped: a
            // TCP_INFO reading could only confirm them. Apply what the rings hold, the newest
            // change marked as seen by this call. (3 getsockopt a connection on a traced server,
            // with their String work, ~6% of its instructions under connect churn.)
            applyKernelEvents(observing: (nil, cause()))
            // This drain may have found a ring full: then read tcp_info below after all.
            if !kernel.source.tracepoint.hasLostRecords { return state }
        }
        // The clock before the call bounds what comes next: the state read held at some instant
        // inside the call, so a later change happened after `before`. Taking the bound after
        // the call, as before, made it too late whenever the thread was preempted between the
        // call and the clock (a loaded host): the next state's interval then started after its
        // peer's reaction, and the causal order had no stamp left to give it.
        let before = MonotonicClock.now()
        guard let info = try? socket.tcpInfo() else { return nil }
        let now = MonotonicClock.now()
        intervalStartNs = lastReadingNs
        lastReadingNs = before
        lastInfo = info
        var kernelRecordsLost = false
        if let kernel {
            // Read first, then drain: every transition this reading shows is already in the
            // rings, so the kernel's events come out first and the reading only confirms them.
            applyKernelEvents(observing: (info.state, cause()))
            if isKernelLinked {
                // ...unless a full ring dropped them (README: "those sockets fall back to
                // inference"). A reading the kernel's events did not reach is then the only
                // witness: record it, and inference fills the states between.
                guard info.state != state, kernel.source.tracepoint.lostRecords > 0 else { return info.state }
                kernelRecordsLost = true
            }
        }
        guard info.state != state else { return info.state }
        if info.state == .closed, let resolved = resolveClosedFD(cause: cause(), at: now, info: info) {
            return resolved
        }
        // A synchronized connection whose fd is still open can only reach CLOSED without our
        // FIN by a reset (or a retransmission timeout): never through FIN_WAIT/CLOSE_WAIT and
        // LAST_ACK, which need our FIN. Without this, a RST read before recv() reported
        // ECONNRESET was filled in as a graceful close.
        if info.state == .closed, !sentFIN, !fdClosed, let state, state != .synSent, state != .listen, state != .closed {
            noteReset()
        }
        if kernelRecordsLost {
            recordObserved(info.state, source: .tcpInfo, cause: cause() + "; the kernel trace lost records, so from tcp_info",
                           at: now, info: info, timerMs: nil)
        } else {
            record(info.state, source: .tcpInfo, cause: cause(), at: now, info: info)
        }
        return info.state
    }

    /// Linux moves a connection that finished its active close to a TIME_WAIT mini-socket and
    /// the fd then reads CLOSED. Ask the kernel's table before claiming CLOSED. On an event
    /// loop (`ownersMustNotBlock`) nothing is asked: the state stays as it was, and the
    /// follower's first lookup after close() (on its own queue) says TIME_WAIT or gone.
    private func resolveClosedFD(cause: String, at now: UInt64, info: TCPInfo) -> TCPState? {
        // Only an active closer can have a TIME_WAIT; checking costs one ~5 µs netlink lookup.
        guard let state, context.weClosedFirst || [.finWait1, .finWait2, .closing, .timeWait].contains(state) else { return nil }
        if ownerMustNotBlock { return state }
        guard let entry = timeWaitMiniSocket(using: diag) else { return nil }
        // Dated by the reading, not after the lookup: Linux hashes the mini-socket before it
        // closes the full socket, so TIME_WAIT held by the time tcp_info read CLOSED. (After
        // the lookup, with its wait for the hand-over, the stamp was ~100 µs late at the median.)
        record(.timeWait, source: .sockDiag,
               cause: "\(cause); the fd reads CLOSED, the kernel holds the connection in a TIME_WAIT mini-socket",
               at: now, info: nil, timerMs: entry.expiresMs)
        return .timeWait
    }

    /// The TIME_WAIT mini-socket that took over this connection after the full socket closed,
    /// or nil (a reset, or Linux skipped TIME_WAIT). Looked up with `expectingTimeWait`, so the
    /// hash swap inside tcp_time_wait() cannot make it look gone; on an event loop once, without
    /// the retries' sleeps (the kernel reported the close, so the swap is long done).
    func timeWaitMiniSocket(using diag: SockDiag?) -> SockDiagEntry? {
        guard !context.reset, let diag, let local, let peer,
              let entry = try? diag.lookup(local: local, peer: peer, cookie: cookie, expectingTimeWait: !ownerMustNotBlock),
              entry.state == .timeWait
        else { return nil }
        return entry
    }

    /// Records that the socket is in `to`, emitting inferred states in between.
    public func record(_ to: TCPState, source: ObservationSource, cause: String, at now: UInt64 = MonotonicClock.now(),
                       info: TCPInfo? = nil, timerMs: UInt32? = nil) {
        if kernel != nil && !kernelAllows(to, source: source) { return }
        recordObserved(to, source: source, cause: cause, at: now, info: info, timerMs: timerMs)
    }

    /// `record` without consulting the kernel source.
    func recordObserved(_ to: TCPState, source: ObservationSource, cause: String, at now: UInt64,
                        info: TCPInfo?, timerMs: UInt32?) {
        guard to != state else { return }
        if to == .closed, let from = state, from != .timeWait, source != .inferred { checkSkippedTimeWait(from: from) }
        if let from = state {
            if let between = TCPStateMachine.statesBetween(from, to, context: context) {
                for inferred in between {
                    emitState(inferred, source: .inferred, cause: "between \(from.name) and \(to.name): \(cause)",
                              at: now, info: nil, timerMs: nil, unexpected: false)
                }
            } else {
                emitState(to, source: source, cause: cause, at: now, info: info, timerMs: timerMs, unexpected: true)
                return
            }
        }
        emitState(to, source: source, cause: cause, at: now, info: info, timerMs: timerMs, unexpected: false)
    }

    /// An active closer reached CLOSED without a TIME_WAIT anyone saw. If the kernel's
    /// TCPTimeWaitOverflow counter rose since our FIN, Linux skipped TIME_WAIT (its table was
    /// full): say so and do not infer a TIME_WAIT that never existed. Measured here: after a
    /// connect/close benchmark left ~130,000 TIME_WAIT sockets, lab runs lost their TIME_WAIT in
    /// bursts while the counter rose (357,948 overflows in all).
    private func checkSkippedTimeWait(from: TCPState) {
        guard context.weClosedFirst, !context.reset, !context.timeWaitSkipped,
              TCPStateMachine.statesBetween(from, .closed, context: context)?.contains(.timeWait) == true,
              let before = timeWaitOverflowsAtFIN, let now = KernelCounters.timeWaitOverflows(), now > before
        else { return }
        context.timeWaitSkipped = true
        let limit = KernelCounters.maxTimeWaitBuckets().map { " (net.ipv4.tcp_max_tw_buckets = \($0))" } ?? ""
        warning("no TIME_WAIT: the kernel's table of TIME_WAIT sockets is full\(limit), so Linux closed this "
                + "connection without one (TCPTimeWaitOverflow +\(now - before) since our FIN); late segments of "
                + "it can no longer be told apart from a new connection on the same ports")
    }

    /// A state the program knows it must have passed but could not see, with the evidence.
    public func infer(_ to: TCPState, cause: String) {
        record(to, source: .inferred, cause: cause)
    }

    func emitState(_ to: TCPState, source: ObservationSource, cause: String, seenAt: String? = nil, at now: UInt64,
                           info: TCPInfo?, timerMs: UInt32?, unexpected: Bool) {
        var event = TraceEvent(timestampNs: now, wallNs: tracer.wallNs(monotonic: now), side: tracer.side,
                               pid: tracer.pid, conn: conn, local: localText, peer: peerText,
                               cookie: cookie, kind: .state, from: state, to: to, source: source, cause: cause,
                               seenAt: seenAt, info: info)
        event.timerMs = timerMs
        event.unexpected = unexpected
        if stateWasObserved, let entered = enteredNs, now >= entered { event.inStateNs = now - entered }
        // The interval it happened in: a kernel tracepoint dates it exactly; a reading says
        // "after the previous reading (or the call that caused it), before this one".
        if source == .tracepoint {
            // Exact, except LISTEN → SYN_RECEIVED: Linux reports it at the final ACK, after
            // the SYN that began it (no known start).
            event.earliestNs = state == .listen && to == .synReceived ? nil : now
        } else if let start = intervalStartNs {
            event.earliestNs = min(now, (to == .finWait1 || to == .lastAck) ? max(start, finCallNs ?? start) : start)
        }
        event.latestNs = now
        tracer.emit(event)
        state = to
        hasEmittedState = true
        stateWasObserved = source != .inferred
        enteredNs = now
        sampleDelayNs = 0
        closeWaitWarned = false
    }

    @inline(__always)
    package func makeEvent(_ kind: TraceEvent.Kind, cause: String, at now: UInt64 = MonotonicClock.now()) -> TraceEvent {
        TraceEvent(timestampNs: now, wallNs: tracer.wallNs(monotonic: now), side: tracer.side,
                   pid: tracer.pid, conn: conn, local: localText,
                   peer: peerText, cookie: cookie, kind: kind, cause: cause)
    }

    // MARK: Other events

    public func error(_ error: SystemCallError, cause: String? = nil) {
        var event = makeEvent(.error, cause: cause ?? error.description)
        event.errno = error.errno
        event.from = state
        tracer.emit(event)
    }

    public func warning(_ text: String) {
        var event = makeEvent(.warning, cause: text)
        event.from = state
        tracer.emit(event)
    }

    public func info(_ text: String) {
        tracer.emit(makeEvent(.info, cause: text))
    }

    /// A syscall note, only with `--trace-verbose`: without it, one Bool test (the text is an
    /// autoclosure, never built). `startedAt` (from `syscallStart()`) dates it when the call
    /// began, so it sorts before the kernel's reports of what the call did.
    public func syscall(_ text: @autoclosure () -> String, startedAt: UInt64? = nil) {
        guard tracer.verbose else { return }
        tracer.emit(makeEvent(.syscall, cause: text(), at: startedAt ?? MonotonicClock.now()))
    }

    /// The clock before a traced syscall: read only with `--trace-verbose`, nil without.
    public func syscallStart() -> UInt64? { tracer.verbose ? MonotonicClock.now() : nil }

    /// Bytes sent or received, only with `--trace-verbose`; escaped when rendered.
    public func data(_ direction: String, _ bytes: UnsafeRawBufferPointer) {
        guard tracer.verbose else { return }
        var event = makeEvent(.data, cause: "\(direction) \(bytes.count) bytes")
        event.bytes = Array(bytes.prefix(256))
        event.byteCount = bytes.count
        tracer.emit(event)
    }

    // MARK: Timers

    /// While in a transient state: how long to wait before sampling TCP_INFO again (20 µs,
    /// doubling to 100 ms). nil when the state only changes with an fd event.
    public func nextSampleDelayNs() -> UInt64? {
        guard let state, state.isTransient, !fdClosed, !isKernelLinked else { return nil }
        sampleDelayNs = sampleDelayNs == 0 ? 20_000 : min(sampleDelayNs * 2, 100_000_000)
        return sampleDelayNs
    }

    /// When the CLOSE_WAIT warning is due (CLOCK_MONOTONIC ns), or nil.
    public var closeWaitDeadline: UInt64? {
        guard state == .closeWait, !closeWaitWarned, let entered = enteredNs else { return nil }
        return entered + tracer.closeWaitWarnNs
    }

    /// Emits the CLOSE_WAIT warning once when it is due. `detail` says what the app is doing.
    public func checkCloseWait(now: UInt64 = MonotonicClock.now(), detail: String? = nil) {
        guard let deadline = closeWaitDeadline, now >= deadline, let entered = enteredNs else { return }
        closeWaitWarned = true
        var text = "CLOSE_WAIT for \(TextTraceRenderer.duration(now - entered)): peer closed "
            + "\(TextTraceRenderer.duration(now - entered)) ago; the application has not called close()"
        if let detail { text += " (\(detail))" }
        warning(text)
    }

    // MARK: Close

    /// The program closed the fd. From now on only sock_diag can see the socket: the follower
    /// watches it (LAST_ACK, orphaned FIN_WAIT_1/2, CLOSING, TIME_WAIT) until it is gone, its
    /// first lookup at once on its own queue: a lookup can wait up to ~0.5 ms for the kernel's
    /// TIME_WAIT hand-over (`SockDiag.lookup`), which must not stall an event loop.
    /// `follow: false` leaves the following to the caller (the scenario lab samples sock_diag
    /// on its own thread, faster than the follower's backoff, with `ClosedSockets`).
    public func closed(cause: String, follow: Bool = true) {
        guard !fdClosed else { return }
        fdClosed = true
        // The mailbox serves open fds only (the follower applies a closed one's changes).
        kernel?.tracker = nil
        if state != .closed { noteOurFIN() }
        guard state != .closed, local != nil, peer != nil else {
            if let kernel { kernel.source.unregister(kernel) }
            return
        }
        guard follow else { return }
        tracer.follower.follow(self, cause: cause)
    }

    /// This socket's owner is an event loop that must not sleep (until close() hands the
    /// tracker to the follower, whose queue may).
    var ownerMustNotBlock: Bool { tracer.ownersMustNotBlock && !fdClosed }

    /// Our FIN went first and no reset: the connection is on its way to TIME_WAIT, so a
    /// sock_diag answer of "gone" deserves a second look (see `SockDiag.lookup`).
    public var expectsTimeWait: Bool {
        guard let state, context.weClosedFirst, !context.reset else { return false }
        return [.established, .finWait1, .finWait2, .closing].contains(state)
    }

    /// Called by the follower with what sock_diag showed (nil: the socket is gone).
    /// `readSince`: when the lookup or dump that gave `entry` began (the bound for what comes
    /// next, as `observe` takes its clock before the call).
    public func followed(_ entry: SockDiagEntry?, cause: String, diag: SockDiag? = nil, readSince: UInt64? = nil) {
        intervalStartNs = lastReadingNs
        lastReadingNs = readSince ?? MonotonicClock.now()
        if let kernel {
            // The follower owns the tracker now: its sock_diag handle, not the event loop's.
            kernel.diag = diag
            applyKernelEvents()
            if entry == nil { kernel.source.unregister(kernel) }
        }
        if let entry {
            record(entry.state, source: .sockDiag, cause: cause, info: entry.info,
                   timerMs: entry.state == .timeWait ? entry.expiresMs : nil)
        } else {
            record(.closed, source: .sockDiag, cause: cause)
        }
    }
}

extension SocketTracker {
    /// An `info` event when the program stops watching a closed socket the kernel still holds:
    /// what it was last seen in, and TIME_WAIT's remaining timer (one sock_diag lookup).
    package func reportStillInKernel(_ when: String, diag: SockDiag?) {
        var event = makeEvent(.info, cause: "still \(state?.name ?? "?") in the kernel \(when)")
        event.from = state
        if state == .timeWait, let diag, let local, let peer {
            event.timerMs = (try? diag.lookup(local: local, peer: peer, cookie: cookie))??.expiresMs
        }
        tracer.emit(event)
    }
}
