import SocketKit
import TCPTrace
import WireFaults

/// `lost-last-ack`: why TIME_WAIT exists. The client's last ACK is lost; the server, in
/// LAST_ACK, cannot tell a lost ACK from a lost FIN and sends its FIN again after its RTO; the
/// client, still in TIME_WAIT, answers it.
public struct LostLastAckScenario: FaultScenario {
    public init() {}
    public let name = "lost-last-ack"
    public let summary = "fault: the client's last ACK is lost; the server in LAST_ACK retransmits its FIN, TIME_WAIT answers it"
    public var faultRules: [FaultRule] { [FaultRule(FaultSelector(sender: .client, kind: .lastAck), .drop)] }
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "active closer", [.synSent, .established, .finWait1, .finWait2, .timeWait]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "passive closer", [.synReceived, .established, .closeWait, .lastAck, .closed]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .timeWait), KeyState(.server, 1, .closeWait), KeyState(.server, 1, .lastAck), KeyState(.server, 1, .closed)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The client closed first and ended in TIME_WAIT after ACKing the server's FIN, but the relay dropped that \
        last ACK. The server, in LAST_ACK, cannot tell a lost ACK from a lost FIN: after its retransmission timeout \
        it sent the same FIN again (same sequence number). Had the client's socket been gone, its kernel would have \
        answered that FIN with a RST and the server would have seen an error instead of a clean close; because \
        TIME_WAIT was still there, it ACKed the retransmitted FIN (restarting its 60 s timer) and the server reached \
        CLOSED. That is the first reason TIME_WAIT lasts 2×MSL: to answer the peer's retransmitted FIN.
        """
    }

    public func run(_ lab: LabRun) throws {
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.close(client)
        let fin = lab.receive(server)
        guard fin.endOfStream else { throw ScenarioError("the server never saw the client's FIN") }
        try lab.close(server)
        let relay = try lab.relay()
        // The client's TIME_WAIT timer just before the server's FIN comes again (the RTO is at
        // least 200 ms: read at 150 ms), then after it.
        lab.wait(client, for: .timeWait)
        lab.watch([], timeout: 0.15, cause: "sock_diag sample") { false }
        let before = lab.timeWaitTimer(client)
        let again = relay.wait(timeout: 3) { records in records.filter { $0.sender == .server && $0.decoded.flags.contains(.fin) }.count >= 2 }
        guard again else { throw ScenarioError("the server did not retransmit its FIN within 3 s") }
        lab.wait(server, for: .closed, timeout: 2)
        if let before, let after = lab.timeWaitTimer(client) {
            client.tracker.info("TIME_WAIT timer (sock_diag): \(before) ms left just before the retransmitted FIN, \(after) ms after it"
                + (after > before ? ": the FIN re-armed it (60 s again)" : ": not re-armed"))
        }
        lab.settle(timeout: 2)
    }

    public func wireChecks(_ segments: [WireSegment], events: [TraceEvent]) -> [WireCheck] {
        let (lost, _) = FaultChecks.faulted(segments, "dropped", from: .client, "the client's last ACK (of the server's FIN) was dropped") {
            $0.flags == .ack && $0.length == 0
        }
        let (again, _, second) = FaultChecks.retransmitted(segments, from: .server, "FIN", minimumGapNs: 150_000_000) { $0.flags.contains(.fin) }
        let end = second.map { $0.seq &+ $0.sequenceLength }
        let (answer, ack) = FaultChecks.acknowledged(segments, from: .client, after: second, end: end,
                                                     "the client's TIME_WAIT ACKs the retransmitted FIN")
        let closed = FaultChecks.state(events, .server, 1, from: .lastAck, to: .closed, after: ack,
                                       "the server goes LAST_ACK → CLOSED after that ACK")
        return SegmentExpectations.handshakes(segments) + [lost, again, answer, closed]
    }
}
