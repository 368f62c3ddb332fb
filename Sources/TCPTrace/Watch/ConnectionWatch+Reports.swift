import SocketKit

extension ConnectionWatch {
    /// How long `connection` has been in its state at `now`; 0 when it entered it after `now`.
    /// A report's `now` is read before a poll, and the poll applies the kernel's changes first,
    /// stamped with their own later times: `now - enteredNs` trapped there (TCPWatch crashed
    /// under a busy host's churn), and a wrapping difference made a just-entered CLOSE_WAIT look
    /// 584 years old, past any warning threshold.
    func age(_ connection: WatchedConnection, at now: UInt64) -> UInt64 {
        Self.elapsed(since: connection.enteredNs, at: now)
    }

    static func elapsed(since start: UInt64, at now: UInt64) -> UInt64 {
        now > start ? now - start : 0
    }

    /// CLOSE_WAIT warnings, per owning process: once a socket has been in CLOSE_WAIT for the
    /// threshold, and again (at most once a second) whenever that process's count grows.
    public func checkCloseWait(now: UInt64) {
        var groups: [Int32: [WatchedConnection]] = [:]
        for connection in table.values where connection.state == .closeWait && age(connection, at: now) >= closeWaitWarnNs {
            groups[connection.owner?.pid ?? 0, default: []].append(connection)
        }
        for (pid, connections) in groups {
            let previous = warned[pid]
            guard connections.count > previous?.count ?? 0, now &- (previous?.atNs ?? 0) >= 1_000_000_000 || previous == nil else { continue }
            warned[pid] = (connections.count, now)
            guard let oldest = connections.min(by: { $0.enteredNs < $1.enteredNs }) else { continue }
            var event = makeEvent(oldest, .warning, at: now, cause: closeWaitText(pid: pid, connections, oldest: oldest, now: now))
            event.heldState = .closeWait
            event.inStateNs = age(oldest, at: now)
            emit(event, keep: oldest.kept)
        }
        for pid in warned.keys where groups[pid] == nil { warned[pid] = nil }
    }

    private func closeWaitText(pid: Int32, _ connections: [WatchedConnection], oldest: WatchedConnection, now: UInt64) -> String {
        let who = oldest.owner?.label ?? (owners.unreadableProcesses > 0
            ? "a process this user cannot see (/proc/PID/fd unreadable; run as its owner or root to name it)"
            : "a process not found in /proc")
        let held = TextTraceRenderer.duration(age(oldest, at: now))
        let unread = connections.reduce(UInt64(0)) { $0 + UInt64($1.receiveQueue) }
        let fin = oldest.peerFIN.map { "the peer's FIN came \($0)" } ?? "the peer's FIN came before watching began"
        if connections.count == 1 {
            return "\(who) holds \(oldest.localText) ⇄ \(oldest.peerText) in CLOSE_WAIT for \(held), \(unread) bytes unread (Recv-Q); "
                + "\(fin): the program has not called close()"
        }
        return "\(who) holds \(connections.count) sockets in CLOSE_WAIT, oldest \(held) (\(oldest.localText) ⇄ \(oldest.peerText), "
            + "\(fin)), \(unread) bytes unread (Recv-Q) in all: the program has not called close()"
    }

    /// `--summary`: one line with the count of watched sockets in each state and how long the
    /// oldest has been in it (`CLOSE_WAIT 37 (oldest 12 s)`), at `now`.
    public func summaryLine(now: UInt64) -> String {
        var counts: [TCPState: (count: Int, since: UInt64)] = [:]
        for connection in table.values {
            guard let state = connection.state else { continue }
            let previous = counts[state] ?? (0, connection.enteredNs)
            counts[state] = (previous.count + 1, min(previous.since, connection.enteredNs))
        }
        let parts = TCPState.all.compactMap { state in
            counts[state].map { "\(state.name) \($0.count) (oldest \(TextTraceRenderer.duration(Self.elapsed(since: $0.since, at: now))))" }
        }
        return "summary: " + (parts.isEmpty ? "no watched sockets" : parts.joined(separator: ", "))
            + " (\(statistics.connections) seen since start)"
    }

    public func emitSummary(now: UInt64) {
        emitNote(.info, summaryLine(now: now))
    }

    /// At exit: each socket still open, with its state and the time in it (TIME_WAIT with its
    /// timer), then the counts.
    ///
    /// At most `limit` sockets are listed (then a count of the rest): under a churn the
    /// table holds thousands of TIME_WAITs, and the counts after them must reach the reader.
    public func finishSockets(now: UInt64, limit: Int = 1_000) {
        let open = table.values.sorted(by: { $0.id < $1.id })
        if open.count > limit {
            emitNote(.info, "\(open.count) watched sockets still open; the first \(limit) follow")
        }
        for connection in open.prefix(limit) {
            guard let state = connection.state else { continue }
            var text = "still \(state.name) after \(TextTraceRenderer.duration(age(connection, at: now)))"
            if connection.enteredAfterNs != nil { text += " (or a little more: entered between two polls)" }
            if state == .closeWait || state == .established { text += ", \(connection.receiveQueue) bytes unread (Recv-Q)" }
            text += ownerNote(connection)
            var event = makeEvent(connection, .info, at: now, cause: text)
            event.from = state
            event.heldState = state
            event.inStateNs = age(connection, at: now)
            if state == .timeWait { event.timerMs = connection.timerMs }
            emit(event, keep: connection.kept)
        }
    }

    /// The closing counts.
    public func finishCounts() {
        let s = statistics
        emitNote(.info, "watched \(s.connections) sockets: \(s.observed) states observed (\(s.byTracepoint) by the tracepoint, "
            + "\(s.betweenPolls) between two polls), \(s.inferred) inferred; \(s.onlyThroughDestroy) seen only through their "
            + "destroy notification (\(s.destroyNotifications) notifications)"
            + (s.untracked > 0 ? "; \(s.untracked) not followed (table full)" : ""))
    }
}

extension ConnectionWatch {
    /// Local ports of the listeners seen: segments from them are the server's.
    public var listeningPortsSnapshot: Set<UInt16> { listeningPorts }

    /// A watched socket is in a state that lasts microseconds to one RTO: poll fast.
    public var hasTransientSockets: Bool { table.values.contains { $0.state?.isTransient == true } }
}
