import SocketKit

extension ConnectionWatch {
    /// A full socket was destroyed. If it was an active closer, the kernel now holds the
    /// connection in a TIME_WAIT mini-socket (`timeWait` looks it up); else it is CLOSED.
    public func applyDestroyed(_ entry: SockDiagEntry, at now: UInt64, kernelComplete: Bool = false,
                               timeWait: (SockDiagEntry) -> SockDiagEntry?) {
        guard matches(local: entry.local, peer: entry.peer, inode: entry.inode) else { return }
        statistics.destroyNotifications += 1
        let key = WatchedConnection.Key(local: entry.local, peer: entry.peer)
        if let known = table[key], known.state == .timeWait || (known.cookie != entry.cookie && known.state != .synReceived) {
            return   // already handed to its TIME_WAIT mini-socket, or an older socket's late notice
        }
        if table[key] == nil, recentlyClosed[key]?.cookie == entry.cookie { return }     // already reported CLOSED
        if kernelComplete { return }    // the tracepoint reports every full socket's changes
        let connection: WatchedConnection
        if let known = table[key] {
            connection = known
        } else {
            // Opened and closed between two polls: only this notification saw it.
            guard let fresh = open(key: key, entry: entry, at: now) else { return }
            connection = fresh
            statistics.onlyThroughDestroy += 1
            startInferred(connection, before: .closed, synchronized: Self.synchronized(entry.info), at: now)
        }
        if connection.state == .synSent || connection.state == .synReceived, Self.synchronized(entry.info) {
            // Last seen in the handshake; its tcp_info at destruction says it got past it.
            record(connection, .established, source: .inferred, at: now, after: nil, info: nil, timerMs: nil,
                   cause: "not seen: it exchanged data or completed the handshake (tcp_info at its destruction)")
        }
        let activeCloser = [.finWait1, .finWait2, .closing, .established, .synSent, .synReceived].contains(connection.state)
            && !connection.context.reset && !connection.context.peerClosedFirst
        if activeCloser, let minisocket = timeWait(entry) {
            connection.context.weClosedFirst = true
            connection.cookie = minisocket.cookie
            connection.timerMs = minisocket.expiresMs
            record(connection, minisocket.state, source: .sockDiag, at: now, after: nil, info: nil, timerMs: minisocket.expiresMs,
                   cause: "full socket destroyed (destroy notification); " + Self.miniSocketCause(minisocket.state))
            return
        }
        if connection.state == .established || connection.state == .synReceived, !connection.context.weClosedFirst {
            connection.context.peerClosedFirst = true
        }
        var skipped = ""
        if [.finWait1, .finWait2, .closing].contains(connection.state), timeWaitOverflowed() {
            // An active closer with no mini-socket while TCPTimeWaitOverflow rose: Linux's
            // TIME_WAIT table is full and it closed without one. Do not infer a TIME_WAIT.
            connection.context.timeWaitSkipped = true
            skipped = "; no TIME_WAIT: the kernel's TIME_WAIT table is full (TCPTimeWaitOverflow rose)"
        }
        close(connection, at: now, source: .sockDiag, cause: "destroyed (sock_diag destroy notification)" + skipped
              + (connection.state == .established ? "; no TIME_WAIT followed: closed by the peer first, or reset" : ""))
    }

    /// Whether TCPTimeWaitOverflow rose since the last look (one read of /proc/net/netstat).
    func timeWaitOverflowed() -> Bool {
        guard let count = KernelCounters.timeWaitOverflows() else { return false }
        defer { lastTimeWaitOverflows = count }
        return lastTimeWaitOverflows.map { count > $0 } ?? false
    }

    /// Evidence in a destroyed socket's tcp_info that it got past the handshake (no tcp_info:
    /// assumed, the common case).
    static func synchronized(_ info: TCPInfo?) -> Bool {
        info.map { $0.bytesAcked > 0 || $0.bytesReceived > 0 || $0.rttMicros > 0 } ?? true
    }
}
