import Glibc
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
public final class TracepointSource: @unchecked Sendable {
    public let tracepoint: KernelTracepoint
    private let sink: TraceSink
    private let side: TraceSide
    private let routing = Mutex(Routing())
    private let stopFlag = Atomic<Bool>(false)
    private var reader: ThreadHandle?
    /// Unclaimed changes older than this are dropped: long enough for accept() to pick up a child.
    static let pendingWindowNs: UInt64 = 10_000_000_000
    static let pendingLimit = 65_536

    /// Opens the tracepoint (mounting tracefs if needed and permitted) and starts the reader.
    /// `sink`/`side` receive the source's own warnings (lost records).
    public init(sink: TraceSink, side: TraceSide) throws {
        // A wake-up every 64 changes (per CPU) plus a 10 ms poll: ~2–3 µs per change instead of
        // ~5–8 µs with one wake-up each; owners sync on every observation anyway.
        tracepoint = try KernelTracepoint(pagesPerCPU: 64, wakeupEvents: 64)
        self.sink = sink
        self.side = side
        reader = try ThreadHandle { [self] in readLoop() }
    }

    /// Resolves `--kernel-trace`: the source, or nil with the reason (auto/off). `on` throws
    /// `KernelTraceUnavailable` when the tracepoint cannot be opened.
    public static func make(mode: KernelTraceMode, sink: TraceSink, side: TraceSide)
        throws(KernelTraceUnavailable) -> (source: TracepointSource?, note: String) {
        guard mode != .off else { return (nil, "kernel trace off (--kernel-trace off): states from tcp_info, sock_diag and inference") }
        do {
            let source = try TracepointSource(sink: sink, side: side)
            return (source, "kernel trace on: every transition from sock:inet_sock_set_state (perf_event_open), TIME_WAIT from sock_diag")
        } catch {
            let reason = KernelTracepoint.describe(error)
            if mode == .on { throw KernelTraceUnavailable(reason: reason) }
            return (nil, "kernel trace unavailable (\(reason)): states from tcp_info, sock_diag and inference")
        }
    }

    /// Stops the reader thread and closes the rings. Idempotent.
    public func stop() {
        guard !stopFlag.exchange(true, ordering: .acquiring) else { return }
        reader?.join()
        sync()
        reportLost()
        tracepoint.close()
    }

    deinit { stop() }

    private func readLoop() {
        var fds = tracepoint.pollDescriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while !stopFlag.load(ordering: .acquiring) {
            _ = poll(&fds, nfds_t(fds.count), 10)
            sync()
            reportLost()
        }
    }

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

    // MARK: Routing

    struct Tuple: Hashable {
        var localPort: UInt16, peerPort: UInt16
        var localHost: String, peerHost: String
    }

    private struct Route {
        let tracker: SocketTracker
        let link: KernelLink
    }

    private struct Routing {
        var bySkaddr: [UInt64: Route] = [:]
        /// Connections whose skaddr is not known yet.
        var byTuple: [Tuple: Route] = [:]
        /// Listeners whose skaddr is not known yet, by port + host.
        var listeners: [Tuple: [Route]] = [:]
        var pending: [KernelStateChange] = []
    }

    /// An AF_INET6 socket talking IPv4 shows `::ffff:a.b.c.d` in the tracepoint: compare as IPv4.
    static func normalized(_ host: String) -> String {
        host.hasPrefix("::ffff:") && host.contains(".") ? String(host.dropFirst(7)) : host
    }

    static func tuple(_ change: KernelStateChange) -> Tuple {
        Tuple(localPort: change.sourcePort, peerPort: change.destinationPort,
              localHost: normalized(change.sourceAddress), peerHost: normalized(change.destinationAddress))
    }

    static func tuple(local: SocketAddress, peer: SocketAddress?) -> Tuple {
        Tuple(localPort: local.port, peerPort: peer?.port ?? 0, localHost: normalized(local.host),
              peerHost: peer.map { normalized($0.host) } ?? "")
    }

    /// Drains every ring and routes each change: to its tracker's inbox, or to `pending`.
    public func sync() {
        routing.withLock { routing in
            for change in tracepoint.drain() { route(change, &routing) }
            prune(&routing)
        }
    }

    private func route(_ change: KernelStateChange, _ routing: inout Routing) {
        if let route = routing.bySkaddr[change.skaddr] {
            deliver([change], to: route, &routing)
            return
        }
        let tuple = Self.tuple(change)
        if change.destinationPort == 0, change.newState == 10 {
            var key = tuple
            key.peerHost = ""
            if var waiting = routing.listeners[key], !waiting.isEmpty {
                let route = waiting.removeFirst()
                routing.listeners[key] = waiting.isEmpty ? nil : waiting
                deliver([change], to: route, &routing)
                return
            }
        } else if change.sourcePort != 0, let route = routing.byTuple.removeValue(forKey: tuple) {
            // First change with the full 4-tuple: this skaddr is ours; a client's earlier
            // CLOSE→SYN_SENT (sport 0, unbound) with the same skaddr is too.
            routing.pending.append(change)
            claim(skaddr: change.skaddr, anchor: routing.pending.count - 1, localPort: tuple.localPort, route: route, &routing)
            return
        }
        routing.pending.append(change)
    }

    /// Moves the changes of one socket's life on `skaddr` out of `pending` into `route`'s inbox:
    /// back from `anchor` to the previous socket's death (a change to CLOSE) or a change with
    /// another local port, and forward to this socket's own death.
    private func claim(skaddr: UInt64, anchor: Int, localPort: UInt16, route: Route, _ routing: inout Routing) {
        let indices = routing.pending.indices.filter { routing.pending[$0].skaddr == skaddr }
        guard let anchorPosition = indices.firstIndex(of: anchor) else { return }
        var start = anchorPosition
        while start > indices.startIndex {
            let earlier = routing.pending[indices[start - 1]]
            if earlier.newState == 7 || (earlier.sourcePort != 0 && earlier.sourcePort != localPort) { break }
            start -= 1
        }
        var end = anchorPosition
        while end < indices.endIndex - 1 && routing.pending[indices[end]].newState != 7 { end += 1 }
        let taken = Array(indices[start...end])
        let changes = taken.map { routing.pending[$0] }
        for index in taken.reversed() { routing.pending.remove(at: index) }
        deliver(changes, to: route, &routing)
    }

    private func deliver(_ changes: [KernelStateChange], to route: Route, _ routing: inout Routing) {
        guard let last = changes.last else { return }
        route.link.inbox.withLock { $0.append(contentsOf: changes) }
        route.link.linked.store(true, ordering: .releasing)
        // The full socket is gone after a change to CLOSE: its skaddr may be reused at once.
        if last.newState == 7 && last.oldState != 7 {
            routing.bySkaddr[last.skaddr] = nil
        } else {
            routing.bySkaddr[last.skaddr] = route
        }
        route.link.mailbox?.post(route.tracker)
    }

    private func prune(_ routing: inout Routing) {
        let now = MonotonicClock.now()
        let floor = now > Self.pendingWindowNs ? now - Self.pendingWindowNs : 0
        if let keep = routing.pending.firstIndex(where: { $0.timestampNs >= floor }) {
            if keep > 0 { routing.pending.removeFirst(keep) }
        } else {
            routing.pending.removeAll(keepingCapacity: true)
        }
        if routing.pending.count > Self.pendingLimit {
            routing.pending.removeFirst(routing.pending.count - Self.pendingLimit)
        }
    }

    /// The tracker knows its addresses: claim what the kernel already reported for them, or
    /// wait for it. `peer` nil: a listener.
    func register(_ tracker: SocketTracker, link: KernelLink, local: SocketAddress, peer: SocketAddress?) {
        routing.withLock { routing in
            for change in tracepoint.drain() { route(change, &routing) }
            let route = Route(tracker: tracker, link: link)
            guard !routing.bySkaddr.values.contains(where: { $0.tracker === tracker }) else { return }
            let tuple = Self.tuple(local: local, peer: peer)
            let claimed = Set(routing.bySkaddr.keys)
            if peer == nil {
                // SO_REUSEPORT listeners share a port: take the oldest live one not yet claimed
                // (listeners are registered in the order they were created).
                let dead = Set(routing.pending.filter { $0.newState == 7 }.map(\.skaddr))
                if let index = routing.pending.firstIndex(where: {
                    $0.destinationPort == 0 && $0.newState == 10 && Self.tuple($0).localPort == tuple.localPort
                        && Self.tuple($0).localHost == tuple.localHost && !claimed.contains($0.skaddr) && !dead.contains($0.skaddr)
                }) {
                    claim(skaddr: routing.pending[index].skaddr, anchor: index, localPort: local.port, route: route, &routing)
                } else {
                    routing.listeners[tuple, default: []].append(route)
                }
                return
            }
            // The newest socket with this 4-tuple (an older one may have died and freed it).
            if let index = routing.pending.lastIndex(where: { Self.tuple($0) == tuple && !claimed.contains($0.skaddr) }) {
                claim(skaddr: routing.pending[index].skaddr, anchor: index, localPort: local.port, route: route, &routing)
            } else {
                routing.byTuple[tuple] = route
            }
        }
    }

    /// The tracker is done: no more routing to it.
    func unregister(_ tracker: SocketTracker) {
        routing.withLock { routing in
            routing.bySkaddr = routing.bySkaddr.filter { $0.value.tracker !== tracker }
            routing.byTuple = routing.byTuple.filter { $0.value.tracker !== tracker }
            for (key, routes) in routing.listeners {
                let rest = routes.filter { $0.tracker !== tracker }
                routing.listeners[key] = rest.isEmpty ? nil : rest
            }
        }
    }
}

/// `--kernel-trace on` and the tracepoint cannot be opened.
public struct KernelTraceUnavailable: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public var description: String { "--kernel-trace on: the kernel tracepoint is unavailable: \(reason)" }
    /// sysexits: 77 when it is a matter of privilege, 69 otherwise (no tracefs, old kernel...).
    public var exitCode: Int32 { reason.contains("needs root") || reason.contains("CAP_PERFMON") || reason.contains("mounting needs root") ? SysExits.noPermission : SysExits.unavailable }
}

/// Trackers of one owner (an event loop) that have kernel changes waiting; the owner applies
/// them once per wake-up. `wake` is called when the list turns non-empty.
public final class KernelMailbox: Sendable {
    private let waiting = Mutex<[SocketTracker]>([])
    private let wake: @Sendable () -> Void

    public init(wake: @escaping @Sendable () -> Void) { self.wake = wake }

    func post(_ tracker: SocketTracker) {
        let first = waiting.withLock { list in
            defer { list.append(tracker) }
            return list.isEmpty
        }
        if first { wake() }
    }

    /// Applies waiting changes of every tracker whose fd is still open (the follower applies
    /// those of closed ones). Call on the owner thread.
    public func deliver() {
        let trackers = waiting.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for tracker in trackers where !tracker.fdClosed { tracker.applyKernelEvents() }
    }
}

/// One tracker's connection to the source. `inbox` and `linked` are shared with the router;
/// the rest is touched only by the tracker's owner thread.
final class KernelLink: @unchecked Sendable {
    let source: TracepointSource
    let mailbox: KernelMailbox?
    let inbox = Mutex<[KernelStateChange]>([])
    /// The router has attributed at least one kernel change to this socket.
    let linked = Atomic<Bool>(false)
    /// Owner-thread state: the last kernel state applied, and the sock_diag handle to use (the
    /// event loop's while it owns the fd, the follower's after close()).
    var kernelState: UInt8?
    var diag: SockDiag?
    var registered = false

    init(source: TracepointSource, mailbox: KernelMailbox?, diag: SockDiag?) {
        self.source = source
        self.mailbox = mailbox
        self.diag = diag
    }

    var isLinked: Bool { linked.load(ordering: .acquiring) }
}

extension KernelTracepoint {
    /// The one-line reason the tracepoint cannot be used.
    static func describe(_ error: any Error) -> String {
        reason(for: error)
    }
}
