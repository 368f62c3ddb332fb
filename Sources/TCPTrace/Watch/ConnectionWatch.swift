import Glibc
import SocketKit

/// What TCPWatch watches. Kinds combine with AND (`--port 80 --pid 42`: pid 42's sockets on
/// port 80); several `--port`s combine with OR.
public struct WatchSelection: Sendable {
    public var ports: Set<UInt16> = []
    public var pids: Set<Int32>?
    public var processName: String?
    public var all = false
    public init(ports: Set<UInt16> = [], pids: Set<Int32>? = nil, processName: String? = nil, all: Bool = false) {
        self.ports = ports
        self.pids = pids
        self.processName = processName
        self.all = all
    }
    var byProcess: Bool { pids != nil || processName != nil }
}

/// Counts for the closing report, the tests and the bench.
public struct WatchStatistics: Sendable, Equatable {
    public var connections = 0
    public var observed = 0
    public var inferred = 0
    public var byTracepoint = 0
    /// Transitions a poll saw: they happened between two polls.
    public var betweenPolls = 0
    /// Connections no poll ever saw: known only through their destroy notification.
    public var onlyThroughDestroy = 0
    public var destroyNotifications = 0
    /// Sockets not followed because the table was full: the most seen by one poll (each poll
    /// sees them again), plus those only a destroy notification showed.
    public var untracked = 0
}

/// The watch engine: a table of watched sockets fed by sock_diag snapshots, destroy
/// notifications and (as root) the tracepoint, turned into trace events. Owned by one thread.
public final class ConnectionWatch {
    public let selection: WatchSelection
    let sink: TraceSink
    let baseNs: UInt64
    let closeWaitWarnNs: UInt64
    public let owners: ProcessOwners
    public internal(set) var statistics = WatchStatistics()
    /// At most this many sockets are followed at once; more are counted, not tracked.
    public let maxConnections: Int
    var table: [WatchedConnection.Key: WatchedConnection] = [:]
    var listeningPorts: Set<UInt16> = []
    private var nextID = 1
    private var lastPollNs: UInt64?
    /// Recently closed, by addresses: a TIME_WAIT the destroy path missed revives its
    /// connection (not by cookie: a socket nobody asked for its cookie hands its TIME_WAIT
    /// mini-socket cookie 0, and the mini-socket then makes up a new one).
    var recentlyClosed: [WatchedConnection.Key: WatchedConnection] = [:]
    private var recentlyClosedOrder: [(key: WatchedConnection.Key, id: Int)] = []
    private var recentlyClosedNext = 0
    /// Client sockets' CLOSE→SYN_SENT arrives before the port is chosen (source port 0).
    var unboundConnects: [UInt64: KernelStateChange] = [:]
    /// Events of the first `pictureConnections` connections, for `--picture`.
    public private(set) var pictureEvents: [TraceEvent] = []
    let pictureConnections: Int
    var warned: [Int32: (count: Int, atNs: UInt64)] = [:]
    var changedThisRound = false
    private var untrackedThisRound = 0
    var lastTimeWaitOverflows: UInt64? = KernelCounters.timeWaitOverflows()

    public init(selection: WatchSelection, sink: TraceSink, baseNs: UInt64, closeWaitWarnSeconds: Double,
                maxConnections: Int = 16_384, pictureConnections: Int = 32) {
        self.selection = selection
        self.sink = sink
        self.baseNs = baseNs
        closeWaitWarnNs = UInt64(closeWaitWarnSeconds * 1e9)
        self.maxConnections = maxConnections
        self.pictureConnections = pictureConnections
        owners = ProcessOwners()
        owners.pids = selection.pids
        owners.command = selection.processName
    }

    /// Whether the last round of input changed a watched socket's state (the poller speeds up).
    public func takeChanged() -> Bool {
        defer { changedThisRound = false }
        return changedThisRound
    }

    public var watchedCount: Int { table.count }

    // MARK: Selection

    func matches(local: SocketAddress, peer: SocketAddress, inode: UInt32) -> Bool {
        if selection.all { return true }
        if !selection.ports.isEmpty, !selection.ports.contains(local.port), !selection.ports.contains(peer.port) { return false }
        if selection.byProcess {
            let key = WatchedConnection.Key(local: local, peer: peer)
            return owners.knownInodes.contains(inode) || table[key] != nil
                || (inode == 0 && processListeningPorts.contains(local.port))
        }
        return true
    }

    /// Local ports of the chosen processes' listeners: their children (before accept()) and
    /// TIME_WAIT mini-sockets carry no inode.
    var processListeningPorts: Set<UInt16> = []

    // MARK: sock_diag snapshots

    /// One poll's dump, begun at `now`. Transitions it shows happened between the previous
    /// poll and this one. `timeWait` looks up the TIME_WAIT mini-socket of a connection the
    /// dump no longer shows (a dump is not atomic: it can miss both the full socket and the
    /// mini-socket replacing it). With the tracepoint on (`kernelComplete`), polls only add
    /// what it cannot see (TIME_WAIT, its end, the sockets present at the start, timers and
    /// queues): a poll can see a state before the tracepoint's record of it is readable.
    ///
    /// `includesTimeWait` false: this dump left TIME_WAIT out (state mask); sockets in it stay.
    public func applySnapshot(_ entries: [SockDiagEntry], at now: UInt64, kernelComplete: Bool = false, includesTimeWait: Bool = true,
                              timeWait: (SocketAddress, SocketAddress) -> SockDiagEntry? = { _, _ in nil }) {
        if selection.byProcess || entries.contains(where: { $0.inode != 0 }) {
            let live = Set(entries.map(\.inode))
            owners.refresh(wanting: entries.map(\.inode), live: live, now: now)
            if selection.byProcess {
                processListeningPorts = Set(entries.filter { $0.state == .listen && owners.knownInodes.contains($0.inode) }.map(\.local.port))
            }
        }
        let previous = lastPollNs
        let firstPoll = previous == nil
        untrackedThisRound = 0
        let followsKernel = kernelComplete && !firstPoll
        var seen = Set<WatchedConnection.Key>()
        for entry in entries where matches(local: entry.local, peer: entry.peer, inode: entry.inode) {
            if entry.state == .listen { listeningPorts.insert(entry.local.port) }
            let key = WatchedConnection.Key(local: entry.local, peer: entry.peer)
            seen.insert(key)
            if var connection = table[key] {
                // A request socket hands over to its child, and a TIME_WAIT mini-socket made
                // from a socket whose cookie nobody asked for makes up its own: same connection.
                let continues = connection.state == .synReceived
                    || (entry.state == .timeWait && [.timeWait, .finWait1, .finWait2, .closing].contains(connection.state))
                    || (entry.state == .finWait2 && [.finWait1, .finWait2].contains(connection.state))
                if connection.cookie != entry.cookie && !continues && !followsKernel {
                    // Same addresses, another socket: the old one ended unseen.
                    close(connection, at: now, source: .sockDiag, cause: "gone: a new socket took its addresses")
                    guard let fresh = open(key: key, entry: entry, at: now) else { continue }
                    connection = fresh
                    begin(connection, with: entry, at: now, after: previous, firstPoll: false)
                    continue
                }
                update(connection, from: entry)
                connection.missedPolls = 0
                guard entry.state != connection.state, connection.enteredNs <= now else { continue }
                if followsKernel && entry.state != .timeWait { continue }
                statistics.betweenPolls += 1
                record(connection, entry.state, source: .sockDiag, at: now, after: previous, info: entry.info,
                       timerMs: entry.state == .timeWait ? entry.expiresMs : nil)
            } else if followsKernel {
                continue
            } else if entry.state == .timeWait, let revived = recentlyClosed.removeValue(forKey: key), revived.cookie == entry.cookie
                        || revived.enteredNs + 1_000_000_000 > now {
                table[key] = revived
                update(revived, from: entry)
                // Not allowed by RFC 9293, so flagged: the CLOSED reported before was wrong.
                emitState(revived, to: .timeWait, source: .sockDiag, at: now,
                          cause: "seen in TIME_WAIT after it was reported CLOSED: the earlier look missed the mini-socket",
                          info: nil, timerMs: entry.expiresMs, unexpected: true)
            } else if let connection = open(key: key, entry: entry, at: now) {
                begin(connection, with: entry, at: now, after: previous, firstPoll: firstPoll)
            }
        }
        for (key, connection) in table where !seen.contains(key) && connection.enteredNs <= now {
            if followsKernel && connection.state != .timeWait && connection.state != .synReceived { continue }
            if !includesTimeWait && connection.state == .timeWait { continue }
            let mayBeMiniSocket = [.finWait1, .finWait2, .closing].contains(connection.state)
                || (!includesTimeWait && connection.state == .established)
            if mayBeMiniSocket, !connection.context.reset,
               let minisocket = timeWait(key.local, key.peer) {
                connection.timerMs = minisocket.expiresMs
                connection.cookie = minisocket.cookie
                record(connection, minisocket.state, source: .sockDiag, at: now, after: previous, info: nil,
                       timerMs: minisocket.expiresMs, cause: Self.miniSocketCause(minisocket.state))
                continue
            }
            // A full socket announces its end with a destroy notification, which may be on its
            // way (it can arrive while the dump runs): give it one more poll.
            if [.synSent, .synReceived, .established, .closeWait, .lastAck].contains(connection.state), connection.missedPolls == 0 {
                connection.missedPolls = 1
                continue
            }
            close(connection, at: now, source: .sockDiag, cause: "gone from the kernel's socket table", after: previous)
        }
        lastPollNs = now
    }

    private func update(_ connection: WatchedConnection, from entry: SockDiagEntry) {
        connection.receiveQueue = entry.receiveQueue
        connection.cookie = entry.cookie
        if entry.inode != 0 {
            connection.inode = entry.inode
            if let owner = owners.owner(inode: entry.inode) { connection.owner = owner }
        }
        if entry.state == .timeWait { connection.timerMs = entry.expiresMs }
    }

    func open(key: WatchedConnection.Key, entry: SockDiagEntry?, at now: UInt64) -> WatchedConnection? {
        guard table.count < maxConnections else {
            untrackedThisRound += 1
            statistics.untracked = max(statistics.untracked, untrackedThisRound)
            if statistics.untracked == 1 {
                emitNote(.warning, "watch: \(maxConnections) sockets followed at once; further new sockets are counted, not followed")
            }
            return nil
        }
        let isServer = key.local.port != 0 && (listeningPorts.contains(key.local.port) || entry?.state == .synReceived
            || entry?.state == .listen)
        let connection = WatchedConnection(id: nextID, key: key, side: isServer ? .server : .client,
                                           cookie: entry?.cookie ?? 0, now: now)
        nextID += 1
        connection.kept = connection.id <= pictureConnections
        if let entry { update(connection, from: entry) }
        table[key] = connection
        statistics.connections += 1
        return connection
    }

    /// The first sight of a socket. Present at the first poll: its past is unknown. Appeared
    /// later: it began since the previous poll, so the states from its start are inferred.
    private func begin(_ connection: WatchedConnection, with entry: SockDiagEntry, at now: UInt64, after: UInt64?, firstPoll: Bool) {
        let timer = entry.state == .timeWait ? entry.expiresMs : nil
        if firstPoll || entry.state == .listen {
            let cause = firstPoll ? "already \(entry.state.name) when watching began" : WatchCauses.describe(nil, entry.state)
            emitState(connection, to: entry.state, source: .sockDiag, at: now, cause: cause + ownerNote(connection),
                      info: entry.info, timerMs: timer, unexpected: false)
            return
        }
        startInferred(connection, before: entry.state, synchronized: true, at: now)
        statistics.betweenPolls += 1
        record(connection, entry.state, source: .sockDiag, at: now, after: after, info: entry.info, timerMs: timer)
    }

    /// A new connection starts in SYN_SENT (client) or SYN_RECEIVED (a listener's child);
    /// unseen, it is inferred. `synchronized`: evidence it got past the handshake.
    func startInferred(_ connection: WatchedConnection, before first: TCPState, synchronized: Bool, at now: UInt64) {
        let origin: TCPState = connection.side == .server ? .synReceived : .synSent
        guard first != origin else { return }
        emitState(connection, to: origin, source: .inferred, at: now,
                  cause: "not seen: a new \(connection.side == .server ? "accepted" : "connecting") socket starts here" + ownerNote(connection),
                  info: nil, timerMs: nil, unexpected: false)
        if synchronized && first == .closed {
            emitState(connection, to: .established, source: .inferred, at: now,
                      cause: "not seen: it exchanged data or completed the handshake (tcp_info)", info: nil, timerMs: nil, unexpected: false)
        }
    }

    /// Linux hands a connection that finished its active close to a mini-socket (struct
    /// inet_timewait_sock): TIME_WAIT, or FIN_WAIT_2 for an orphan whose peer has not closed
    /// yet (tcp_close() with tcp_fin_timeout), which later turns into TIME_WAIT. The full
    /// socket is destroyed (its destroy notification, the tracepoint's CLOSE), the connection
    /// is not.
    static func miniSocketCause(_ state: TCPState) -> String {
        state == .timeWait
            ? "the kernel holds the connection in a TIME_WAIT mini-socket"
            : "the kernel holds the orphaned connection in a FIN_WAIT_2 mini-socket until the peer's FIN or tcp_fin_timeout"
    }

    // MARK: Recording

    /// Records `to`, inferring the states RFC 9293 says were crossed since the last one.
    func record(_ connection: WatchedConnection, _ to: TCPState, source: ObservationSource, at now: UInt64, after: UInt64?,
                info: TCPInfo?, timerMs: UInt32?, cause given: String? = nil) {
        guard to != connection.state else { return }
        if to == .closeWait && !connection.context.weClosedFirst { connection.context.peerClosedFirst = true }
        if to == .finWait1 && !connection.context.peerClosedFirst { connection.context.weClosedFirst = true }
        var notes = ""
        if let after, source == .sockDiag {
            notes = "; changed between polls at \(relative(after)) and \(relative(now))"
        } else if source == .sockDiag, given == nil {
            notes = " (sock_diag)"
        }
        if connection.state == nil { notes += ownerNote(connection) }
        if let from = connection.state {
            guard let between = TCPStateMachine.statesBetween(from, to, context: connection.context) else {
                emitState(connection, to: to, source: source, at: now, cause: (given ?? WatchCauses.describe(from, to)) + notes,
                          info: info, timerMs: timerMs, unexpected: true)
                return
            }
            for state in between {
                emitState(connection, to: state, source: .inferred, at: now,
                          cause: "not seen, between \(from.name) and \(to.name): " + WatchCauses.describe(connection.state, state),
                          info: nil, timerMs: nil, unexpected: false)
            }
        }
        emitState(connection, to: to, source: source, at: now, cause: (given ?? WatchCauses.describe(connection.state, to)) + notes,
                  info: info, timerMs: timerMs, unexpected: false, interval: (after ?? now, now))
        if to == .closeWait {
            connection.peerFIN = after.map { "between \(relative($0)) and \(relative(now))" } ?? "at \(relative(now))"
        }
        connection.enteredAfterNs = after
    }

    /// CLOSED, then out of the table (remembered briefly by cookie).
    func close(_ connection: WatchedConnection, at now: UInt64, source: ObservationSource, cause: String, after: UInt64? = nil) {
        if connection.state != .closed {
            if connection.state == .established || connection.state == .synReceived, !connection.context.weClosedFirst {
                connection.context.peerClosedFirst = true
            }
            record(connection, .closed, source: source, at: now, after: after, info: nil, timerMs: nil, cause: cause)
        }
        table[connection.key] = nil
        // A ring of the last 4,096 closes bounds the memory under any churn.
        recentlyClosed[connection.key] = connection
        if recentlyClosedOrder.count < 4096 {
            recentlyClosedOrder.append((connection.key, connection.id))
        } else {
            let old = recentlyClosedOrder[recentlyClosedNext]
            if recentlyClosed[old.key]?.id == old.id { recentlyClosed[old.key] = nil }
            recentlyClosedOrder[recentlyClosedNext] = (connection.key, connection.id)
            recentlyClosedNext = (recentlyClosedNext + 1) % 4096
        }
    }

    /// `interval`: when the change happened, at the earliest and latest (`earliest_ns`,
    /// `latest_ns`): the two polls around it, or the kernel's time twice.
    func emitState(_ connection: WatchedConnection, to: TCPState, source: ObservationSource, at now: UInt64, cause: String,
                   info: TCPInfo?, timerMs: UInt32?, unexpected: Bool, interval: (UInt64, UInt64)? = nil) {
        var event = makeEvent(connection, .state, at: now, cause: cause)
        if let interval, source != .inferred { (event.earliestNs, event.latestNs) = interval }
        event.from = connection.state
        event.to = to
        event.source = source
        event.info = info
        event.timerMs = timerMs
        event.unexpected = unexpected
        // Only when both ends of the stay were observed: an inferred state has no known start.
        if connection.state != nil, connection.stateObserved, source != .inferred, now >= connection.enteredNs,
           connection.enteredAfterNs == nil {
            event.inStateNs = now - connection.enteredNs
        }
        connection.stateObserved = source != .inferred
        if source == .inferred { statistics.inferred += 1 } else { statistics.observed += 1 }
        connection.state = to
        connection.enteredNs = now
        connection.enteredAfterNs = nil
        changedThisRound = true
        emit(event, keep: connection.kept)
    }

    func makeEvent(_ connection: WatchedConnection, _ kind: TraceEvent.Kind, at now: UInt64, cause: String) -> TraceEvent {
        var event = TraceEvent(timestampNs: now, side: connection.side, pid: connection.owner?.pid ?? 0, conn: connection.id,
                               local: connection.localText, peer: connection.peerText, cookie: connection.cookie,
                               kind: kind, cause: cause)
        event.process = connection.owner?.command
        return event
    }

    func emit(_ event: TraceEvent, keep: Bool) {
        sink.emit(event)
        if keep && pictureEvents.count < 4096 { pictureEvents.append(event) }
    }

    func emitNote(_ kind: TraceEvent.Kind, _ text: String, pid: Int32 = 0) {
        sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, pid: pid, conn: 0, kind: kind, cause: text))
    }

    func ownerNote(_ connection: WatchedConnection) -> String {
        if let owner = connection.owner { return "; \(owner.label)" }
        if connection.inode == 0 { return "" }
        return owners.unreadableProcesses > 0
            ? "; owner not found (/proc/PID/fd of \(owners.unreadableProcesses) processes is unreadable to this user)"
            : "; owner not found (it exited or closed the socket)"
    }

    /// `+1.234567 s` on the trace's clock.
    func relative(_ ns: UInt64) -> String {
        "+" + TextTraceRenderer.seconds(ns >= baseNs ? ns - baseNs : 0) + " s"
    }
}
