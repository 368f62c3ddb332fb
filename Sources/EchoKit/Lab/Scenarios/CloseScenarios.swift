import SocketKit
import TCPTrace

/// `client-close`: handshake, one echo, the client closes first (the four-way close).
public struct ClientCloseScenario: LabScenario {
    public init() {}
    public let name = "client-close"
    public let summary = "handshake, one echo, the client closes first: client ends in TIME_WAIT, server passes CLOSE_WAIT → LAST_ACK"
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "active closer", [.synSent, .established, .finWait1, .finWait2, .timeWait]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "passive closer", [.synReceived, .established, .closeWait, .lastAck, .closed]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        var keys = [KeyState(.client, 1, .timeWait), KeyState(.server, 1, .closeWait)]
        if slowMotion { keys += [KeyState(.server, 1, .lastAck), KeyState(.client, 1, .finWait1)] }
        return keys
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The client's close() sent a FIN (FIN_WAIT_1); the server's kernel ACKed it at once (client FIN_WAIT_2) \
        and recv() returned 0 to the server, which now sat in CLOSE_WAIT until it called close() itself. \
        That close() sent the server's FIN (LAST_ACK); the client's ACK of it ended the server's socket and put \
        the client in TIME_WAIT. On Linux the client's fd reads CLOSED by then: TIME_WAIT lives in a \
        mini-socket only sock_diag (ss) shows, for 60 s (TCP_TIMEWAIT_LEN), not the RFC's 2×MSL of 4 minutes.
        """
    }

    public func run(_ lab: LabRun) throws {
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.close(client)
        let fin = lab.receive(server, others: [])
        guard fin.endOfStream else { throw ScenarioError("the server never saw the client's FIN") }
        lab.pause([server], cause: "sampling while the server finishes its work before close()")
        try lab.close(server)
        lab.settle()
    }
}

/// `server-close`: the server closes first; the roles of client-close swap.
public struct ServerCloseScenario: LabScenario {
    public init() {}
    public let name = "server-close"
    public let summary = "the server closes first: server ends in TIME_WAIT, client passes CLOSE_WAIT → LAST_ACK"
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "passive closer", [.synSent, .established, .closeWait, .lastAck, .closed]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "active closer", [.synReceived, .established, .finWait1, .finWait2, .timeWait]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        var keys = [KeyState(.server, 1, .timeWait), KeyState(.client, 1, .closeWait)]
        if slowMotion { keys += [KeyState(.client, 1, .lastAck), KeyState(.server, 1, .finWait1)] }
        return keys
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        Here the server's close() sent the first FIN, so the server is the active closer: FIN_WAIT_1, \
        FIN_WAIT_2 once the client's kernel ACKed, then TIME_WAIT after the client's own FIN. The client learned \
        of the close from recv() = 0 (CLOSE_WAIT) and closed in turn (LAST_ACK until the server's ACK). \
        Whoever closes first pays the 60 s TIME_WAIT on Linux: servers that close first collect TIME_WAIT \
        sockets on their own port, which is why many protocols let the client close.
        """
    }

    public func run(_ lab: LabRun) throws {
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.close(server)
        let fin = lab.receive(client)
        guard fin.endOfStream else { throw ScenarioError("the client never saw the server's FIN") }
        lab.pause([client], cause: "sampling while the client finishes its work before close()")
        try lab.close(client)
        lab.settle()
    }
}

/// `half-close`: shutdown(SHUT_WR) on the client; the server keeps sending after the FIN.
public struct HalfCloseScenario: LabScenario {
    public init() {}
    public let name = "half-close"
    public let summary = "the client shuts down its write side; the server keeps sending after the client's FIN, then closes"
    static let afterFIN = ["echo of the last line\n", "more data after your FIN\n"]
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "half-closer", [.synSent, .established, .finWait1, .finWait2, .timeWait]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "keeps sending", [.synReceived, .established, .closeWait, .lastAck, .closed]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        var keys = [KeyState(.client, 1, .finWait2), KeyState(.server, 1, .closeWait), KeyState(.client, 1, .timeWait)]
        if slowMotion { keys += [KeyState(.client, 1, .finWait1), KeyState(.server, 1, .lastAck)] }
        return keys
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        shutdown(SHUT_WR) sent the client's FIN but kept its fd open for reading: FIN_WAIT_1, then FIN_WAIT_2 \
        once ACKed, and the client went on receiving. The server, in CLOSE_WAIT after recv() = 0, was still \
        allowed to send (a FIN closes one direction only), then closed (LAST_ACK). This is how a client says \
        "that was all my input" and still reads the whole answer; the fd reads CLOSED at the end while the \
        kernel holds the client's TIME_WAIT (60 s on Linux) in a mini-socket.
        """
    }

    public func run(_ lab: LabRun) throws {
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.send(client, "last line\n")
        try lab.shutdownWrite(client)
        var got = lab.receive(server, others: [client])
        if !got.endOfStream { got = lab.receive(server, others: [client]) }
        guard got.endOfStream else { throw ScenarioError("the server never saw the client's FIN") }
        var sent = 0
        for text in Self.afterFIN {
            try lab.send(server, text)
            sent += text.utf8.count
        }
        server.info("sent \(sent) bytes after the client's FIN (allowed: the server's direction is still open)")
        let back = lab.receive(client, count: sent, others: [server])
        client.info("received \(back.bytes.count) bytes after its own FIN")
        guard back.bytes.count == sent else { throw ScenarioError("data after FIN was lost: \(back.bytes.count) of \(sent) bytes") }
        lab.pause([server, client], cause: "sampling before the server's close()")
        try lab.close(server)
        let end = lab.receive(client)
        guard end.endOfStream else { throw ScenarioError("the client never saw the server's FIN") }
        lab.wait(client, for: .timeWait)
        try lab.close(client)
        lab.settle()
    }
}
