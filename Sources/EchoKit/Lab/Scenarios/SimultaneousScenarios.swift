import Glibc
import SocketKit
import TCPTrace

/// `simultaneous-open`: two sockets bound to each other's ports connect at once; no listener.
public struct SimultaneousOpenScenario: LabScenario {
    public init() {}
    public let name = "simultaneous-open"
    public let summary = "two sockets bound to each other's ports connect at once: both SYN_SENT → SYN_RECEIVED → ESTABLISHED"
    public var maxTries: Int { 20 }
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "peer A", [.synSent, .synReceived, .established]),
            ScenarioTrack(.server, 1, "peer B", [.synSent, .synReceived, .established]),
        ]
    }

    /// SYN_RECEIVED is the whole point: without seeing it on both sides there is no evidence
    /// that the opens crossed (one side may take the ordinary SYN-ACK path).
    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .synReceived), KeyState(.server, 1, .synReceived)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        Each socket sent a SYN to the other's port; each SYN arrived while its receiver was itself in SYN_SENT, \
        so both answered with a SYN-ACK and went to SYN_RECEIVED, then ESTABLISHED when the other's SYN-ACK \
        arrived: one connection, no listener, four segments instead of three. On real-speed loopback the first \
        SYN usually arrives before the second connect() and is refused with a RST, so the crossing works only \
        in some tries; \(slowMotion ? "slow motion makes each SYN take tens of milliseconds, so it crosses every time." : "slow motion makes it deterministic.")
        """
    }

    public func run(_ lab: LabRun) throws {
        // Two free ports: bind, read the port, keep the sockets (SO_REUSEADDR on both).
        let a = try lab.socket(.client, conn: 1, bindTo: lab.loopback)
        let b = try lab.socket(.server, conn: 1, bindTo: lab.loopback)
        let addressA = try a.socket.localAddress()
        let addressB = try b.socket.localAddress()
        a.traced.attach(local: addressA, peer: addressB)
        b.traced.attach(local: addressB, peer: addressA)
        try lab.startConnect(a, to: addressB)
        do {
            try lab.startConnect(b, to: addressA)
        } catch let error as SystemCallError {
            // A's SYN arrived first and B's bound-but-idle socket answered RST: not simultaneous.
            throw ScenarioError("B's connect() failed (\(error)): A's SYN arrived before B connected")
        }
        var failure: Error?
        for (endpoint, address) in [(a, addressB), (b, addressA)] {
            do { try lab.finishConnect(endpoint, to: address, others: [a, b].filter { $0.socket !== endpoint.socket }) }
            catch { failure = failure ?? error }
        }
        if let failure { throw failure }
        try lab.echo("hello\n", client: a, server: b)
    }
}

/// `simultaneous-close`: both sides send their FIN before seeing the other's.
public struct SimultaneousCloseScenario: LabScenario {
    public init() {}
    public let name = "simultaneous-close"
    public let summary = "both sides shut down at once: FIN_WAIT_1 → CLOSING → TIME_WAIT on both"
    public var maxTries: Int { 5 }
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "closes", [.synSent, .established, .finWait1, .closing, .timeWait]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "closes too", [.synReceived, .established, .finWait1, .closing, .timeWait]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .closing), KeyState(.server, 1, .closing),
         KeyState(.client, 1, .timeWait), KeyState(.server, 1, .timeWait)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        Both sides called shutdown(SHUT_WR) before either FIN arrived, so each received the other's FIN while \
        its own was still unacknowledged: FIN_WAIT_1 → CLOSING instead of FIN_WAIT_2. The ACKs then moved both \
        to TIME_WAIT, so both ends hold a TIME_WAIT mini-socket (60 s on Linux) and both fds read CLOSED. \
        At real speed on loopback the first FIN is delivered and ACKed inside the first shutdown() call, so \
        CLOSING lasts microseconds or does not happen; \(slowMotion ? "slow motion holds each segment long enough to see it." : "use slow motion to see it.")
        """
    }

    public func run(_ lab: LabRun) throws {
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.shutdownWrite(client)
        try lab.shutdownWrite(server)
        let resting: Set<TCPState> = [.timeWait, .closed, .closeWait, .lastAck, .finWait2]
        let both = lab.watch([client, server], timeout: lab.stepTimeout, cause: "sampling after both shutdown(SHUT_WR)") {
            resting.contains(client.state ?? .closed) && resting.contains(server.state ?? .closed)
                && client.state != .finWait2 && server.state != .finWait2
        }
        guard both else { throw ScenarioError("the close did not finish in time") }
        for endpoint in [client, server] where endpoint.state == .timeWait {
            try lab.close(endpoint)
        }
        lab.settle()
    }
}
