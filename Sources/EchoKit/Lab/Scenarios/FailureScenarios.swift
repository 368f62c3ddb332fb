import Glibc
import SocketKit
import TCPTrace

/// `reset`: abortive close with SO_LINGER {1, 0}.
public struct ResetScenario: LabScenario {
    public init() {}
    public let name = "reset"
    public let summary = "abortive close with SO_LINGER {1, 0}: RST, no TIME_WAIT, ECONNRESET on the peer"
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "aborts", [.synSent, .established, .closed]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "gets RST", [.synReceived, .established, .closed]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .closed), KeyState(.server, 1, .closed)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        With SO_LINGER {on, 0 s}, close() discards unsent data and sends a RST instead of a FIN: the client's \
        socket went from ESTABLISHED straight to CLOSED, and sock_diag shows no TIME_WAIT for it. The server's \
        next recv() failed once with ECONNRESET and its socket read CLOSED. Use it to drop a misbehaving peer; \
        as a way to avoid TIME_WAIT it also loses any data still in flight.
        """
    }

    public func run(_ lab: LabRun) throws {
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.close(client, abortive: true)
        let got = lab.receive(server)
        guard got.error?.errno == ECONNRESET else {
            throw ScenarioError("the server's recv() did not fail with ECONNRESET (\(got.error.map { "\($0)" } ?? "no error"))")
        }
        lab.settle()
    }
}

/// `refused`: connect to a port nobody listens on.
public struct RefusedScenario: LabScenario {
    public init() {}
    public let name = "refused"
    public let summary = "connect to a port with no listener: SYN_SENT → CLOSED, ECONNREFUSED"
    public var tracks: [ScenarioTrack] {
        [ScenarioTrack(.client, 1, "connects", [.synSent, .closed])]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        slowMotion ? [KeyState(.client, 1, .synSent), KeyState(.client, 1, .closed)] : [KeyState(.client, 1, .closed)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The client's SYN reached a port with no listener, so the kernel answered with a RST (a remote host \
        does the same; a firewall that drops instead makes connect() retry for ~2 minutes). The RST moved the \
        client from SYN_SENT to CLOSED and connect() reported ECONNREFUSED. On loopback this takes microseconds; \
        \(slowMotion ? "in slow motion SYN_SENT lasts as long as the SYN and RST take to cross." : "SYN_SENT is usually inferred.")
        """
    }

    public func run(_ lab: LabRun) throws {
        // A free port: bind, read it, close. Nobody listens there afterwards.
        let probe = try Socket(family: AF_INET)
        try probe.bind(to: lab.loopback)
        let target = try probe.localAddress()
        try probe.close()
        let client = try lab.socket(.client, conn: 1)
        do {
            try lab.startConnect(client, to: target)
            try lab.finishConnect(client, to: target)
        } catch let error as SystemCallError where error.errno == ECONNREFUSED {
            return
        }
        throw ScenarioError("connect() to \(target) did not fail with ECONNREFUSED")
    }
}

/// `backlog-full`: the listener's accept queue is full, so a client's SYN is dropped.
public struct BacklogFullScenario: LabScenario {
    public init() {}
    public let name = "backlog-full"
    public let summary = "listen backlog full: a client lingers in SYN_SENT while its SYN is retransmitted, then gets in"
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "fills the queue", [.synSent, .established]),
            ScenarioTrack(.client, 2, "waits", [.synSent, .established]),
            ScenarioTrack(.server, 0, "listener, backlog 0", [.listen]),
            ScenarioTrack(.server, 1, "accepted first", [.synReceived, .established]),
            ScenarioTrack(.server, 2, "accepted late", [.synReceived, .established]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 2, .synSent)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        listen(fd, 0) lets Linux queue one completed connection; the first client filled it, and since nobody \
        called accept(), the kernel dropped the second client's SYN: it stayed in SYN_SENT and retransmitted \
        the SYN after 1 s. Linux 6.x keeps the first retransmissions 1 s apart (net.ipv4.tcp_syn_linear_timeouts, \
        4 by default), then doubles the gap; older kernels double from the start (1 s, 2 s, 4 s...). Once \
        accept() made room, the next retransmission got through. A server that accepts too slowly looks, from \
        the client, like a slow network: connects that take whole seconds (see nstat ListenOverflows).
        """
    }

    public func run(_ lab: LabRun) throws {
        let listener = try lab.listener(backlog: 0)
        let address = try listener.socket.localAddress()
        let first = try lab.socket(.client, conn: 1)
        try lab.startConnect(first, to: address)
        try lab.finishConnect(first, to: address)
        // Let the server's side of the first handshake land in the accept queue.
        lab.watch([first], timeout: lab.slowMotion ? 0.3 : 0.05, cause: "sampling") { false }
        let waiting = try lab.socket(.client, conn: 2)
        try lab.startConnect(waiting, to: address)
        // Hold until the kernel has retransmitted the SYN at least once (~1 s).
        let retransmitted = lab.watch([waiting], timeout: 2.5, cause: "sampling while the SYN is unanswered") {
            (waiting.lastInfo?.totalRetrans ?? 0) >= 1 || waiting.state == .established
        }
        guard waiting.state == .synSent else { throw ScenarioError("the second client was not held in SYN_SENT") }
        if retransmitted {
            waiting.info("still SYN_SENT: the SYN was retransmitted (tcpi_total_retrans=\(waiting.lastInfo?.totalRetrans ?? 0)); the listener's queue is full")
        }
        _ = try lab.accept(listener, conn: 1, others: [waiting])
        listener.info("accept() made room in the queue; the next SYN retransmission gets in")
        try lab.finishConnect(waiting, to: address, timeout: 6)
        _ = try lab.accept(listener, conn: 2, others: [waiting])
    }
}
