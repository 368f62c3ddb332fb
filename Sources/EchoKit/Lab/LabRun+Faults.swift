import SocketKit
import TCPTrace
import WireFaults

/// The lab's steps on the fault wire: with `faults` set, the server's sockets are created in
/// the server's network namespace (a socket stays where it was created, whichever thread uses
/// it later) and looked up there by sock_diag; the client's stay in this process's namespace.
extension LabRun {
    /// Puts the run on `wire`: the server's sockets in its namespace, looked up there.
    public func use(_ wire: FaultWire) {
        faults = wire
        if let diag = wire.serverDiag {
            orphans.serverDiag = diag
            server.follower.use(diag)
        }
    }

    /// Runs `body` where `side`'s sockets live.
    func onSide<T>(_ side: TraceSide, _ body: () throws -> T) throws -> T {
        guard side == .server, let faults else { return try body() }
        return try faults.inServerNamespace(body)
    }

    /// The address the server listens on: 127.0.0.1, or its end of the fault wire.
    public var serverHost: SocketAddress { faults?.serverAddress ?? loopback }

    /// The sock_diag socket that sees `side`'s sockets.
    func diag(for side: TraceSide) -> SockDiag? {
        guard side == .server, let faults else { return diag }
        return faults.serverDiag
    }

    /// The relay, for the fault scenarios' own steps (hold, release, inject).
    public func relay() throws -> FaultRelay {
        guard let faults else { throw ScenarioError("this scenario needs the fault wire") }
        return faults.relay
    }
}

extension LabRun {
    /// The TIME_WAIT timer of `endpoint`'s closed socket, in ms left (sock_diag), or nil.
    func timeWaitTimer(_ endpoint: LabEndpoint) -> UInt32? {
        guard let side = endpoint.traced.side,
              let entry = try? endpoint.traced.kernelEntry(using: diag(for: side), expectingTimeWait: true),
              entry.state == .timeWait else { return nil }
        return entry.expiresMs
    }
}

extension LabRun {
    /// Notes the server's request socket (SYN_RECEIVED, a mini-socket accept() cannot return)
    /// as sock_diag in the server's namespace shows it, while `done` does not hold: when it
    /// appears (with its SYN+ACK retransmission timer) and when it is gone.
    func watchRequest(_ listener: LabEndpoint, server: SocketAddress, client: SocketAddress, until done: () -> Bool,
                      others: [LabEndpoint], timeout: Double) {
        guard let diag = diag(for: .server) else { return }
        var seenSince: UInt64?
        watch(others, timeout: timeout, cause: "sampling while the handshake hangs") {
            let entry = try? diag.lookup(local: server, peer: client, cookie: nil)
            let now = MonotonicClock.now()
            if let entry, entry.state == .synReceived {
                if seenSince == nil {
                    seenSince = now
                    listener.info("sock_diag: a request socket \(server) ⇄ \(client) in SYN_RECEIVED, not accept()able yet;"
                        + " its SYN+ACK retransmission timer fires in \(entry.expiresMs) ms")
                }
            } else if let since = seenSince {
                listener.info("sock_diag: the request socket left SYN_RECEIVED after \(TextTraceRenderer.duration(now - since))")
                return true
            }
            return done()
        }
    }
}
