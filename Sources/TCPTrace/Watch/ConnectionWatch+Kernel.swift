import Glibc
import SocketKit

extension ConnectionWatch {
    /// One change from `sock:inet_sock_set_state`, with the kernel's own timestamp.
    public func applyKernel(_ change: KernelStateChange, timeWait: (SocketAddress, SocketAddress, UInt64) -> SockDiagEntry?) {
        guard change.family == AF_INET || change.family == AF_INET6,
              let local = SocketAddress(numericHost: change.sourceAddress, port: change.sourcePort),
              let peer = SocketAddress(numericHost: change.destinationAddress, port: change.destinationPort) else { return }
        let from = TCPState(kernel: change.oldState), to = TCPState(kernel: change.newState)
        if change.sourcePort == 0 {
            // CLOSE→SYN_SENT before connect() picked the port: kept until the socket shows its tuple.
            if selection.all || selection.ports.contains(change.destinationPort) || selection.byProcess {
                if unboundConnects.count >= 4096 { unboundConnects.removeAll() }
                unboundConnects[change.skaddr] = change
            }
            return
        }
        guard matches(local: local, peer: peer, inode: 0) || (selection.byProcess && listeningPorts.contains(change.sourcePort))
        else { unboundConnects[change.skaddr] = nil; return }
        let key = WatchedConnection.Key(local: local, peer: peer)
        var connection = table[key]
        if let existing = connection, existing.state == .timeWait, from != .timeWait {
            close(existing, at: change.timestampNs, source: .sockDiag, cause: "gone: a new socket took its addresses")
            connection = nil
        }
        if connection == nil {
            guard let fresh = open(key: key, entry: nil, at: change.timestampNs) else { return }
            if to == .listen { fresh.side = .server; listeningPorts.insert(local.port) }
            if from == .listen { fresh.side = .server }
            if let connect = unboundConnects.removeValue(forKey: change.skaddr) {
                fresh.state = .closed
                record(fresh, .synSent, source: .tracepoint, at: connect.timestampNs, after: nil, info: nil, timerMs: nil)
            } else if from != .closed {
                // The child of a listener starts as a copy of it (LISTEN); an older socket was
                // in `from` before we saw it.
                fresh.state = from
            }
            connection = fresh
        }
        guard let connection else { return }
        statistics.byTracepoint += 1
        if to == .closed, [.finWait1, .finWait2, .closing].contains(from), let minisocket = timeWait(local, peer, connection.cookie) {
            connection.cookie = minisocket.cookie
            connection.timerMs = minisocket.expiresMs
            record(connection, minisocket.state, source: .sockDiag, at: change.timestampNs, after: nil, info: nil,
                   timerMs: minisocket.expiresMs, cause: Self.miniSocketCause(minisocket.state) + " (the tracepoint reports CLOSE)")
            return
        }
        if to == .closed {
            var cause = WatchCauses.describe(from, to)
            if [.finWait1, .finWait2, .closing].contains(from), timeWaitOverflowed() {
                connection.context.timeWaitSkipped = true
                cause += "; no TIME_WAIT: the kernel's TIME_WAIT table is full (TCPTimeWaitOverflow rose)"
            }
            close(connection, at: change.timestampNs, source: .tracepoint, cause: cause)
        } else {
            record(connection, to, source: .tracepoint, at: change.timestampNs, after: nil, info: nil, timerMs: nil)
        }
    }
}
