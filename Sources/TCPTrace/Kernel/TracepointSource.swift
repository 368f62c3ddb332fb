import Glibc
import SocketKit
import Synchronization

/// `--kernel-trace`: whether states come from the kernel's tracepoint (root or CAP_PERFMON).
public enum KernelTraceMode: String, Sendable, CaseIterable {
    /// Use the tracepoint when it can be opened, else the unprivileged sources (said once).
    case auto
    /// Use the tracepoint or fail.
    case on
    /// Never: tcp_info, sock_diag and inference only.
    case off
}

/// The `tracepoint` observation source: every state change the kernel makes on *our* sockets,
/// with the kernel's own CLOCK_MONOTONIC timestamp.
///
/// The tracepoint is system-wide. Changes are routed to a socket's tracker only once they are
/// attributed to it: by 4-tuple (learned from the tracker's addresses), then by skaddr. Changes
/// nobody claims stay in a short `pending` window (a listener's CLOSE→LISTEN and a child's
/// LISTEN→SYN_RECV happen before our tracker knows its addresses) and are dropped unseen:
/// other processes' connections are never printed.
///
/// Hand-off: `sync()` drains the rings and appends to per-tracker inboxes under one lock, from
/// any thread (a reader thread keeps the rings from overflowing; owners sync before they
/// record). Each tracker's owner applies its own inbox (`SocketTracker.applyKernelEvents`), so
/// a tracker is still only mutated by its owner thread.
public final class TracepointSource: Sendable {
    public let tracepoint: KernelTracepoint
    private let sink: TraceSink
    private let side: TraceSide
    private let routing = Mutex(KernelRouter<KernelLink>(windowNs: pendingWindowNs, limit: pendingLimit))
    private let stopFlag = Atomic<Bool>(false)
    /// Syncs between their drain and the end of their hand-out (see `sync(applying:)`).
    private let syncsInFlight = Atomic<Int>(0)
    /// Set once the thread exists (it needs `self`); taken by `stop`.
    private let reader = Mutex<ThreadHandle?>(nil)
    /// Unclaimed changes older than this are dropped: long enough for accept() to pick up a child
    /// (the lab's backlog-full leaves one in the accept queue ~2 s).
    static let pendingWindowNs: UInt64 = 5_000_000_000
    /// At most this many unclaimed changes (the router keeps 4× as many ring slots). Measured under
    /// connect churn (8 connect/close loops, ~10,000 connections/s, the load generator's own
    /// sockets never claimed): 65,536 let the ring grow to ~260,000 entries and the traced
    /// server's peak RSS to 52 MiB; 8,192 peaks at 17.5 MiB and serves ~35% more connections/s,
    /// while still holding ~0.5 s of such churn, far more than accept()'s lag. A change pruned
    /// before its socket registers is not lost to the trace: that socket falls back to tcp_info.
    static let pendingLimit = 8_192

    /// Opens the tracepoint (mounting tracefs first only if `mayMount` and permitted) and starts
    /// the reader. `sink`/`side` receive the source's own warnings (lost records).
    public convenience init(sink: TraceSink, side: TraceSide, mayMount: Bool = false) throws {
        // A wake-up every 512 changes per CPU (a fifth of a 64-page ring, ~2,500 records of 104
        // bytes) plus a 10 ms poll. Owners sync on every observation anyway, so under churn the
        // reader mostly finds the rings drained: with a wake-up every 64 changes it woke ~1,100
        // times/s in connect8 churn, each a context switch on the server's one CPU.
        try self.init(sink: sink, side: side, pagesPerCPU: 64, wakeupEvents: 512, mayMount: mayMount)
    }

    /// With a chosen ring size: tests use one page per CPU to make the rings overflow.
    package init(sink: TraceSink, side: TraceSide, pagesPerCPU: Int, wakeupEvents: UInt32, mayMount: Bool = false) throws {
        tracepoint = try KernelTracepoint(pagesPerCPU: pagesPerCPU, wakeupEvents: wakeupEvents, mayMount: mayMount)
        self.sink = sink
        self.side = side
        let thread = try ThreadHandle { [self] in readLoop() }
        reader.locked { $0 = thread }
    }

    /// Resolves `--kernel-trace`: the source, or nil with the reason (auto/off). `on` throws
    /// `KernelTraceUnavailable` when the tracepoint cannot be opened. Only `on` mounts tracefs
    /// where it is not mounted, and its note says so; `auto` uses tracefs only where it is.
    public static func make(mode: KernelTraceMode, sink: TraceSink, side: TraceSide)
        throws(KernelTraceUnavailable) -> (source: TracepointSource?, note: String) {
        guard mode != .off else { return (nil, "kernel trace off (--kernel-trace off): states from tcp_info, sock_diag and inference") }
        do {
            let mounted = KernelTracepoint.tracefsMounted()
            let source = try TracepointSource(sink: sink, side: side, mayMount: mode == .on)
            let mount = mounted ? "" : "; mounted tracefs on \(KernelTracepoint.tracefsPath) for it (--kernel-trace on)"
            return (source, "kernel trace on: every transition from sock:inet_sock_set_state (perf_event_open), TIME_WAIT from sock_diag" + mount)
        } catch {
            let reason = KernelTracepoint.describe(error)
            if mode == .on { throw KernelTraceUnavailable(reason: reason) }
            return (nil, "kernel trace unavailable (\(reason)): states from tcp_info, sock_diag and inference")
        }
    }

    /// Filters the rings in the kernel to changes of sockets bound to `ports` (the server's
    /// listener and the connections it accepted; its clients' own sockets are not ours), so an
    /// unrelated churn elsewhere on the host costs nothing: without it the reader saw every state
    /// change of the host (~80,000/s under a 10,000 connections/s churn on another port), fell
    /// behind and lost records. Records already in the rings (the listener's CLOSE → LISTEN,
    /// written before the port was known) stay. C: `ioctl(PERF_EVENT_IOC_SET_FILTER)` per CPU.
    /// Returns the note's wording.
    public func restrict(toPorts ports: [UInt16]) -> String {
        do {
            try tracepoint.setFilter(KernelTracepoint.portFilter(ports, localOnly: true))
            return "filtered in the kernel to sockets on local port " + ports.map(String.init).joined(separator: ", ")
        } catch {
            return "not filtered in the kernel (\(error)): every change on the host is read and routed"
        }
    }

    /// Stops the reader thread and closes the rings. Idempotent.
    public func stop() {
        guard !stopFlag.exchange(true, ordering: .acquiring) else { return }
        reader.locked { $0.take() }?.join()
        sync()
        reportLost()
        tracepoint.close()
    }

    deinit { stop() }

    private func readLoop() {
        var fds = tracepoint.pollDescriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        var lostCheckedNs: UInt64 = 0
        while !stopFlag.load(ordering: .acquiring) {
            _ = poll(&fds, nfds_t(fds.count), 10)
            sync()
            // Reading the events' lost counters is a read() per CPU, and each makes the kernel
            // interrupt that CPU to read its counter (an IPI: `smp_call_function_single`); done
            // on every wake-up it was 4.3% of a traced server's CPU under connect churn. Ten
            // times a second is soon enough for the warning; a full ring's PERF_RECORD_LOST is
            // counted on every drain anyway.
            let now = MonotonicClock.now()
            if now &- lostCheckedNs >= Self.lostCheckIntervalNs {
                lostCheckedNs = now
                reportLost()
            }
        }
    }

    static let lostCheckIntervalNs: UInt64 = 100_000_000

    /// Tests: nobody drains while set, as when the reader falls behind a burst, so the rings
    /// fill and drop records (README: lost records are reported, those sockets fall back).
    package let drainsHeld = Atomic<Bool>(false)

    // MARK: Lost records

    private let reportedLost = Atomic<UInt64>(0)

    /// A full ring drops changes: never silently. One warning per increase.
    func reportLost() {
        let lost = tracepoint.lostRecords
        let before = reportedLost.exchange(lost, ordering: .relaxed)
        guard lost > before else { return }
        sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .warning,
                             cause: "kernel trace: the ring buffers dropped \(lost - before) state changes (\(lost) in all); "
                                 + "states of the affected sockets are filled from tcp_info, sock_diag and inference"))
    }

    // MARK: Routing (KernelRouter.swift)

    /// Drains every ring and routes each change: to its tracker's inbox, or to `pending`.
    /// `applying`: the link whose owner applies its inbox right after this call, so it is not
    /// posted to its mailbox (a post wakes the owner's eventfd for an inbox already empty).
    public func sync() { sync(applying: nil) }

    func sync(applying owner: KernelLink?) {
        guard !drainsHeld.load(ordering: .relaxed) else { return }
        // An owner's sync with empty rings would route nothing: skip the drain, the routing and
        // the hand-out, and without the lock when no other sync is between its drain and the
        // end of its hand-out. Rings another thread has just emptied can still be routing: an
        // owner that skipped then missed its own changes, inferred SYN_RECEIVED and read
        // ESTABLISHED from tcp_info, and the kernel's copies came after (OracleTests,
        // 2026-12-04). So every sync counts itself in `syncsInFlight` before it drains and out
        // after its hand-out; an owner that sees a ring's tail moved by a drain (the ring's
        // lock orders it) sees that drain's count too, and a count back at 0 means the
        // hand-out's inbox writes are visible. Pruning is left to the reader's periodic sync
        // (it always runs; it bounds memory only).
        if owner != nil && syncsInFlight.load(ordering: .acquiring) == 0 && !tracepoint.hasRecords()
            && syncsInFlight.load(ordering: .acquiring) == 0 { return }
        syncsInFlight.wrappingAdd(1, ordering: .sequentiallyConsistent)
        defer { syncsInFlight.wrappingSubtract(1, ordering: .releasing) }
        routing.locked { router in
            tracepoint.drain(into: &router.incoming)
            // Rings emptied by the sync this one waited for: nothing to route. (Asked of the
            // drain, not of `hasRecords()` before it: one lock round trip of the rings fewer.)
            if owner != nil && router.incoming.isEmpty { return }
            router.routeIncoming()
            // Expiry needs the clock: the reader's sync, at least every 10 ms, reads it.
            router.prune(now: owner == nil ? MonotonicClock.now() : nil)
            handOut(&router, applying: owner)
        }
    }

    /// Appends the router's deliveries to the trackers' inboxes and wakes their owners: one
    /// inbox lock and one mailbox post per run of changes for the same tracker.
    private func handOut(_ router: inout KernelRouter<KernelLink>, applying owner: KernelLink? = nil) {
        var start = 0
        for index in 0..<router.runs.count {
            // Borrowed, not retained: the router holds every run's link until
            // `clearDeliveries()` below, and the link its mailbox for life.
            let link = Unmanaged.passUnretained(router.runs[index].target)
            let end = router.runs[index].end
            // A run ending in CLOSE ends the socket's life: nothing more will be posted for it.
            let lifeEnded = router.delivered[end - 1].newState == KernelTCPState.close.rawValue
            link._withUnsafeGuaranteedRef { link in
                let tracker = router.delivered.withElements(start..<end) { link.post($0, lifeEnded: lifeEnded) }
                link.linked.store(true, ordering: .releasing)
                if link !== owner, let tracker { link.mailbox?.post(tracker) }
            }
            start = end
        }
        router.clearDeliveries()
    }

    /// The tracker knows its addresses: claim what the kernel already reported for them, or
    /// wait for it. `peer` nil: a listener.
    /// The rings are not drained here: what they still hold is routed to the tracker by its
    /// addresses at the next drain, which its owner's next observation makes anyway (one drain a
    /// connection fewer under churn).
    func register(_ tracker: any KernelChangeReceiver, link: KernelLink, local: SocketAddress, peer: SocketAddress?) {
        routing.locked { router in
            link.tracker = tracker
            router.register(link, local: local, peer: peer)
            handOut(&router)
        }
    }

    /// The tracker is done: no more routing to it. (Its receiver went at close(), the only
    /// time a tracker is unregistered after: `SocketTracker.closed`.)
    func unregister(_ link: KernelLink) {
        routing.locked { router in router.unregister(link) }
    }
}
