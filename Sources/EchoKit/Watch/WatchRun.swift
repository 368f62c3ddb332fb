import CSocketKit
import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// TCPWatch's engine: one thread waits on the destroy-notification socket, the tracepoint rings
/// and the captures, and dumps the socket table when the adaptive interval says so. Everything
/// it learns goes through `ConnectionWatch` into the trace. It watches the network namespace
/// it was started in and never enters another one. Single owner (the thread that calls `run`):
/// another thread may only stop it, through `stopper`.
public final class WatchRun {
    let options: WatchOptions
    let sink: TraceWriter
    let watch: ConnectionWatch
    let baseNs: UInt64
    /// Dumps (filtered by `bytecode`) and exact lookups.
    private let diag: SockDiag
    private let destroys: SockDiagChannel
    private var tracepoint: KernelTracepoint?
    private var wire: WatchWire?
    private var polling = AdaptivePolling(budget: 0.08)
    private let bytecode: [UInt8]
    private var destroyOverruns = 0
    /// The one part another thread (the signal thread) may touch.
    public let stopper: WatchStopper

    /// Opens every source; throws (one line, a sysexits code) when one the options demand fails.
    public init(options: WatchOptions, sink: TraceWriter, baseNs: UInt64) throws {
        self.options = options
        self.sink = sink
        self.baseNs = baseNs
        watch = ConnectionWatch(selection: options.selection, sink: sink, baseNs: baseNs,
                                closeWaitWarnSeconds: options.closeWaitWarnSeconds)
        diag = try SockDiag()
        destroys = try SockDiagChannel()
        let ports = Array(options.selection.ports)
        bytecode = WatchFilters.portBytecode(ports)
        // Filter before joining the groups: nothing unfiltered is ever queued.
        try destroys.attachFilter(WatchFilters.destroyFilter(ports: ports))
        _ = try? destroys.setReceiveBuffer(bytes: 4 << 20)
        try destroys.subscribe(groups: SockDiagChannel.tcpDestroyGroups)
        stopper = try WatchStopper()
        try openKernelTrace(ports: ports)
        if options.wire != .off {
            wire = WatchWire(ports: ports, sink: sink, pcapPath: options.pcapPath)
        }
    }

    private func openKernelTrace(ports: [UInt16]) throws {
        let (tracepoint, line) = try KernelTracepoint.openForWatch(mode: options.kernelTrace, ports: ports)
        self.tracepoint = tracepoint
        note(line)
    }

    /// Asks the loop to stop; it finishes within one wait.
    public func requestStop() { stopper.requestStop() }

    /// Runs until `--duration` or `requestStop()`; then reports what is still open and the counts.
    public func run() throws {
        if geteuid() != 0 {
            note("owners: /proc/PID/fd is readable for this user's processes only (uid \(getuid())); others' sockets show no pid")
        }
        // The first poll before the start line: a reader (or a test) that sees the line knows
        // every later connection is new to the watch.
        let firstPoll = MonotonicClock.now()
        let firstBusy = try pollOnce(at: firstPoll)
        note(startLine() + ": \(watch.watchedCount) sockets now")
        let deadline = options.durationSeconds.map { baseNs + UInt64($0 * 1e9) }
        var nextPoll = firstPoll + polling.next(busy: firstBusy, cost: lastCost)
        var nextTick = nextPoll
        var nextSummary = nextPoll + 1_000_000_000
        while !stopper.isStopping {
            var now = MonotonicClock.now()
            if let deadline, now >= deadline { break }
            var until = min(nextPoll, nextTick)
            if let deadline { until = min(until, deadline) }
            if until > now { waitForInput(timeoutNs: until - now) }
            now = MonotonicClock.now()
            drainKernel()
            try drainDestroys(now: now)
            wire?.drain(servers: watch.listeningPortsSnapshot)
            now = MonotonicClock.now()
            if now >= nextPoll {
                let busy = try pollOnce(at: now)
                // From this poll's start: a dump that takes 40 ms must not stretch the 0.5 s bound.
                nextPoll = now + polling.next(busy: busy, cost: lastCost)
            }
            if now >= nextTick {
                watch.checkCloseWait(now: now)
                nextTick = now + 100_000_000
            }
            if options.summary, now >= nextSummary {
                watch.emitSummary(now: now)
                nextSummary = now + 1_000_000_000
            }
            sink.requestFlush()
        }
        try finish()
    }

    private var lastCost: UInt64 = 0
    private var lastPollStart: UInt64 = 0
    /// The longest time between two polls' starts: the bound a missed state can hide in.
    private var longestGapNs: UInt64 = 0
    /// The tracepoint is on and has lost nothing: it alone reports full sockets' transitions.
    private var kernelComplete: Bool { tracepoint.map { $0.lostRecords == 0 } ?? false }
    private var ipv6Seen = false
    private var lastIPv6Dump: UInt64 = 0
    private var lastTimeWaitDump: UInt64 = 0

    /// One round of dumps (IPv4, IPv6), measured in this thread's CPU time (kernel included).
    private func pollOnce(at now: UInt64) throws -> Bool {
        if lastPollStart > 0 { longestGapNs = max(longestGapNs, now &- lastPollStart) }
        lastPollStart = now
        let before = MonotonicClock.threadCPUTime()
        // Without a port filter (--pid, --process, --all) every TIME_WAIT socket of the host
        // would come back each time (100,000 of them here under other programs' churn):
        // TIME_WAIT is dumped at the slowest rate only, the state mask leaves it out otherwise.
        let withTimeWait = !bytecode.isEmpty || now &- lastTimeWaitDump >= AdaptivePolling.slowestNs
        if withTimeWait { lastTimeWaitDump = now }
        let mask = withTimeWait ? WatchFilters.allStates : WatchFilters.allStates & ~(1 << 6)
        var entries = try diag.dump(family: AF_INET, stateMask: mask, bytecode: bytecode)
        // Each family's dump walks the whole table again (~1.4 ms here with 13,000 TIME_WAIT
        // sockets on the host): IPv6 goes at the slowest rate until a watched IPv6 socket shows.
        if ipv6Seen || now &- lastIPv6Dump >= AdaptivePolling.slowestNs {
            let v6 = try diag.dump(family: AF_INET6, stateMask: mask, bytecode: bytecode)
            lastIPv6Dump = now
            if !v6.isEmpty { ipv6Seen = true }
            entries += v6
        }
        lastCost = MonotonicClock.threadCPUTime() &- before
        drainKernel()          // the tracepoint's own changes first, then what the dump adds
        watch.applySnapshot(entries, at: now, kernelComplete: kernelComplete, includesTimeWait: withTimeWait) { local, peer in
            self.timeWaitEntry(local: local, peer: peer, cookie: nil)
        }
        if let wire {
            // Loopback from the start; then the interfaces of the watched sockets' addresses
            // (a wildcard listener: every interface that is up), before their next segment.
            if polling.polls == 0 { coverWire(wire) { try wire.cover(interface: "lo") } }
            for entry in entries { coverWire(wire) { try wire.cover(local: entry.local) } }
        }
        let changed = watch.takeChanged()
        return changed || watch.hasTransientSockets
    }

    private func coverWire(_ wire: WatchWire, _ open: () throws -> Void) {
        do {
            try open()
        } catch {
            if options.wire == .on {
                stopWith = CommandFailure("--wire on: cannot capture (\(error)); needs root or CAP_NET_RAW", exitStatus: SysExits.noPermission)
                stopper.markStopping()
            } else {
                note("wire unavailable (\(error)): no segments (needs root or CAP_NET_RAW)")
            }
        }
    }

    /// Set when the loop must end with a failure.
    private var stopWith: CommandFailure?

    private func drainKernel() {
        guard let tracepoint else { return }
        for change in tracepoint.drain() {
            watch.applyKernel(change) { local, peer, cookie in
                self.timeWaitEntry(local: local, peer: peer, cookie: nil)
            }
        }
    }

    private func drainDestroys(now: UInt64) throws {
        let received = try destroys.receiveNotifications(limit: 256)
        if received.overrun {
            destroyOverruns += 1
            warn("destroy notifications LOST: the kernel's queue for them overflowed (\(destroyOverruns) times); "
                 + "connections that opened and closed between two polls may be missing")
        }
        guard !received.entries.isEmpty else { return }
        drainKernel()
        for entry in received.entries {
            if entry.local.family == AF_INET6 { ipv6Seen = true }
            watch.applyDestroyed(entry, at: now, kernelComplete: kernelComplete) { entry in
                // No cookie: see ConnectionWatch.recentlyClosed.
                self.timeWaitEntry(local: entry.local, peer: entry.peer, cookie: nil)
            }
        }
    }

    /// The mini-socket (TIME_WAIT, or an orphan's FIN_WAIT_2) that took over a destroyed full socket.
    private func timeWaitEntry(local: SocketAddress, peer: SocketAddress, cookie: UInt64?) -> SockDiagEntry? {
        guard let entry = try? diag.lookup(local: local, peer: peer, cookie: cookie, expectingTimeWait: true),
              entry.state == .timeWait || entry.state == .finWait2 else { return nil }
        return entry
    }

    private func waitForInput(timeoutNs: UInt64) {
        var fds = [pollfd(fd: stopper.wake, events: Int16(POLLIN), revents: 0), pollfd(fd: destroys.fd, events: Int16(POLLIN), revents: 0)]
        for fd in (tracepoint?.pollDescriptors ?? []) + (wire?.descriptors ?? []) {
            fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        }
        let milliseconds = Int32(min(timeoutNs / 1_000_000 + 1, 1_000))
        _ = poll(&fds, nfds_t(fds.count), milliseconds)
    }

    private func finish() throws {
        if let stopWith { throw stopWith }
        // A last look, so the closing report is current.
        _ = try? pollOnce(at: MonotonicClock.now())
        try? drainDestroys(now: MonotonicClock.now())
        let now = MonotonicClock.now()
        // Each flush empties the bounded queue: the counts and the polling report must not be
        // the lines a full queue drops.
        sink.flush()
        watch.finishSockets(now: now)
        sink.flush()
        watch.finishCounts()
        let seconds = Double(now - baseNs) / 1e9
        let meanInterval = polling.polls > 0 ? seconds / Double(polling.polls) * 1000 : 0
        let meanCost = polling.polls > 0 ? Double(polling.totalCostNs) / Double(polling.polls) / 1000 : 0
        note("sock_diag: \(polling.polls) polls in \(format(seconds, 1)) s (mean interval \(format(meanInterval, 1)) ms, longest \(longestGapNs / 1_000_000) ms, adaptive "
             + "\(AdaptivePolling.fastestNs / 1_000_000)–\(AdaptivePolling.slowestNs / 1_000_000) ms), "
             + "\(format(meanCost, 0)) µs CPU per poll; destroy notifications lost: \(destroyOverruns == 0 ? "none" : "YES (\(destroyOverruns) overflows)")")
        for line in wire?.stop() ?? [] { note(line) }
        if let lost = tracepoint?.lostRecords, lost > 0 {
            warn("kernel trace: the rings dropped \(lost) state changes; those sockets' states came from sock_diag and inference")
        }
        tracepoint?.close()
        if let path = options.picturePath {
            let picture = LadderPicture(title: "TCPWatch: \(startLine())", events: watch.pictureEvents)
            try PictureFile.writeLadder(picture, to: path)
            note("picture written to \(ByteEscaping.escape(path))")
        }
        sink.flush()
    }

    private func startLine() -> String {
        let selection = options.selection
        var parts: [String] = []
        if selection.all { parts.append("every TCP socket") }
        if !selection.ports.isEmpty { parts.append("port " + selection.ports.sorted().map(String.init).joined(separator: ", ") + " (local or remote)") }
        if let pids = selection.pids { parts.append("pid " + pids.map(String.init).joined(separator: ", ")) }
        if let name = selection.processName { parts.append("process \(ByteEscaping.escape(name))") }
        return "watching " + parts.joined(separator: " of ") + " in this network namespace"
    }

    private func note(_ text: String) {
        sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, pid: 0, conn: 0, kind: .info, cause: text))
    }

    private func warn(_ text: String) {
        sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, pid: 0, conn: 0, kind: .warning, cause: text))
    }

    private func format(_ value: Double, _ decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        return decimals == 0 ? String(Int(rounded)) : String(rounded)
    }
}
