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
            client.info("TIME_WAIT timer (sock_diag): \(before) ms left just before the retransmitted FIN, \(after) ms after it"
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

/// `lost-fin`: the active closer's FIN is lost; it stays in FIN_WAIT_1 for one retransmission
/// timeout, sends the same FIN again, and only then does the peer learn of the close.
public struct LostFINScenario: FaultScenario {
    public init() {}
    public let name = "lost-fin"
    public let summary = "fault: the client's FIN is lost; FIN_WAIT_1 lasts one RTO until the same FIN is sent again"
    public var faultRules: [FaultRule] { [FaultRule(FaultSelector(sender: .client, kind: .fin), .drop)] }
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "active closer", [.synSent, .established, .finWait1, .finWait2, .timeWait]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "passive closer", [.synReceived, .established, .closeWait, .lastAck, .closed]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .finWait1), KeyState(.client, 1, .timeWait), KeyState(.server, 1, .closeWait)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The client's close() sent a FIN and entered FIN_WAIT_1, but the relay dropped the FIN. Nothing came back, \
        so the client's kernel could not tell whether the FIN or its ACK was lost: after its retransmission timeout \
        (about 200 ms: Linux's minimum RTO, which a tail loss probe for a lone segment also waits) it sent the very \
        same FIN again, same sequence number. Only that copy reached the server, whose recv() returned 0 (CLOSE_WAIT) \
        one RTO later than it would have on a perfect wire. FIN_WAIT_1's duration in the trace is that timeout: every \
        segment that occupies sequence space, FIN included, is retransmitted until acknowledged.
        """
    }

    /// client-close's steps, on a wire that loses the client's first FIN.
    public func run(_ lab: LabRun) throws {
        try ClientCloseScenario().run(lab)
    }

    public func wireChecks(_ segments: [WireSegment], events: [TraceEvent]) -> [WireCheck] {
        let (lost, _) = FaultChecks.faulted(segments, "dropped", from: .client, "the client's FIN was dropped") { $0.flags.contains(.fin) }
        let (again, first, second) = FaultChecks.retransmitted(segments, from: .client, "FIN", minimumGapNs: 150_000_000) { $0.flags.contains(.fin) }
        let closeWait = FaultChecks.state(events, .server, 1, from: .established, to: .closeWait, after: second,
                                          "the server reaches CLOSE_WAIT only after the retransmitted FIN")
        return SegmentExpectations.handshakes(segments) + [lost, again, closeWait, Self.finWait1Duration(events, first: first)]
    }

    /// FIN_WAIT_1 lasted at least the gap between the two FINs (one RTO).
    static func finWait1Duration(_ events: [TraceEvent], first: WireSegment?) -> WireCheck {
        let mine = events.filter { $0.kind == .state && $0.side == .client && $0.conn == 1 }
        guard let entered = mine.first(where: { $0.to == .finWait1 }), let left = mine.first(where: { $0.from == .finWait1 }) else {
            return WireCheck(description: "FIN_WAIT_1 lasts one RTO", passed: false, evidence: "FIN_WAIT_1 not entered and left in the trace")
        }
        let lasted = left.timestampNs - entered.timestampNs
        return WireCheck(description: "FIN_WAIT_1 lasts one RTO (≥ 150 ms)", passed: lasted >= 150_000_000,
                         evidence: "FIN_WAIT_1 for \(FaultChecks.format(lasted))" + (first.map { ", from FIN #\($0.id)" } ?? ""))
    }
}

/// `lost-syn-ack`: the server's SYN+ACK is lost; both sides retransmit after about a second,
/// the server's request socket waiting in SYN_RECEIVED all the while.
public struct LostSynAckScenario: FaultScenario {
    public init() {}
    public let name = "lost-syn-ack"
    public let summary = "fault: the server's SYN+ACK is lost; SYN_RECEIVED lasts ~1 s, both sides retransmit"
    /// The SYN+ACK is dropped. The first SYN is also held 100 ms: both sides' timers are 1 s, the
    /// kernel's timer wheel fires a 1 s timer up to 64 ms late, and whichever fires first ends
    /// the wait; a 100 ms head start makes it the client's, so both sides' retransmissions show
    /// (the client's SYN, then the server's SYN+ACK in answer to it) in every run.
    public var faultRules: [FaultRule] {
        [FaultRule(FaultSelector(sender: .server, kind: .synAck), .drop),
         FaultRule(FaultSelector(sender: .client, kind: .syn), .delay(ns: 100_000_000))]
    }
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "connects", [.synSent, .established]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "accepted", [.synReceived, .established]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .synSent), KeyState(.client, 1, .established), KeyState(.server, 1, .established)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The client's SYN arrived and the server's kernel answered with a SYN+ACK, keeping the half-open connection \
        as a request socket in SYN_RECEIVED (sock_diag shows it; accept() cannot, it returns only finished \
        connections). The relay dropped the SYN+ACK (and had held the first SYN 100 ms, so that the client's timer \
        would fire before the server's). Each side waits its initial retransmission timeout, 1 s (TCP_TIMEOUT_INIT, \
        RFC 6298): the client sent its SYN again (same ISN), and the server, seeing the same SYN again, sent its \
        SYN+ACK again. The client spent that second in SYN_SENT and the server's request in SYN_RECEIVED; a connect() \
        that takes one extra second is the mark of a lost handshake segment.
        """
    }

    public func run(_ lab: LabRun) throws {
        let listener = try lab.listener()
        let address = try listener.socket.localAddress()
        let client = try lab.socket(.client, conn: 1)
        try lab.startConnect(client, to: address)
        // The request socket, seen by sock_diag in the server's namespace while the handshake hangs.
        if let local = try? client.socket.localAddress() {
            lab.watchRequest(listener, server: address, client: local, until: { client.state == .established || !client.socket.isOpen },
                             others: [client], timeout: 3)
        }
        try lab.finishConnect(client, to: address, timeout: 3)
        let server = try lab.accept(listener, conn: 1, others: [client])
        lab.wait(server, for: .established, others: [client])
    }

    public func wireChecks(_ segments: [WireSegment], events: [TraceEvent]) -> [WireCheck] {
        let (lost, _) = FaultChecks.faulted(segments, "dropped", from: .server, "the server's SYN+ACK was dropped") { $0.flags.contains([.syn, .ack]) }
        let (synAckAgain, _, _) = FaultChecks.retransmitted(segments, from: .server, "SYN+ACK", minimumGapNs: 500_000_000) { $0.flags.contains([.syn, .ack]) }
        let (synAgain, _, _) = FaultChecks.retransmitted(segments, from: .client, "SYN", minimumGapNs: 800_000_000) { $0.flags == .syn }
        let (held, _) = FaultChecks.faulted(segments, "delayed", from: .client, "the first SYN was held 100 ms (the client's timer runs first)") { $0.flags == .syn }
        return [held, lost, synAckAgain, synAgain] + SegmentExpectations.handshakes(segments)
    }
}

/// `old-duplicate-syn`: why a connection opens with three segments. A SYN from an attempt the
/// client gave up on reaches the listener late; the server answers, the client's kernel knows
/// no such connection and resets it, and nothing is ever accepted.
public struct OldDuplicateSynScenario: FaultScenario {
    public init() {}
    public let name = "old-duplicate-syn"
    public let summary = "fault: a stale SYN from an abandoned attempt reaches the listener; the client's RST stops it, nothing is accepted"
    public var faultRules: [FaultRule] { [FaultRule(FaultSelector(sender: .client, kind: .syn), .hold)] }
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "gives up", [.synSent, .closed]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .synSent), KeyState(.server, 0, .listen)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The client's connect() sent a SYN that the relay held back, as a slow path in a network might; the client gave up \
        and closed its socket (SYN_SENT → CLOSED; a socket closed in SYN_SENT sends nothing). Later the stale SYN, with \
        the old attempt's ISN, reached the listener, whose kernel answered with a SYN+ACK. The client's kernel had no \
        connection for that four-tuple, so it answered with a RST, and the server dropped its half-open request: \
        accept() never returned. The third segment of the handshake is what makes this safe: the client confirms the \
        server's ISN only for a SYN it really sent now. With a two-way handshake (SYN, SYN+ACK) the server would have \
        held an ESTABLISHED connection to nobody, and sent data the client would only reset.
        """
    }

    public func run(_ lab: LabRun) throws {
        let relay = try lab.relay()
        let listener = try lab.listener()
        let address = try listener.socket.localAddress()
        let client = try lab.socket(.client, conn: 1)
        try lab.startConnect(client, to: address)
        // Long enough to read SYN_SENT; short of the SYN's 1 s retransmission.
        lab.watch([client], timeout: 0.2, cause: "sampling while the SYN is held in the network") { false }
        guard client.state == .synSent else { throw ScenarioError("the client was not held in SYN_SENT (\(client.state?.name ?? "?"))") }
        client.info("the client gives up on this attempt: close() in SYN_SENT sends nothing")
        try lab.close(client)
        lab.watch([], timeout: 0.1, cause: "sock_diag sample") { false }
        listener.info("the relay releases the stale SYN (old ISN, the client's old address and port)")
        relay.releaseHeld()
        let reset = relay.wait(timeout: 2) { $0.contains { $0.sender == .client && $0.decoded.flags.contains(.rst) } }
        guard reset else { throw ScenarioError("the client's kernel did not answer the SYN+ACK with a RST") }
        var accepted = false
        lab.watch([listener], timeout: 0.3, cause: "sampling while the server could accept") {
            if case .processed? = try? listener.socket.accept() { accepted = true }
            return accepted
        }
        if accepted { throw ScenarioError("accept() returned a connection: the stale SYN opened one") }
        listener.info("accept() found no connection: the RST removed the half-open request")
    }

    public func wireChecks(_ segments: [WireSegment], events: [TraceEvent]) -> [WireCheck] {
        let (stale, syn) = FaultChecks.faulted(segments, "delayed", from: .client, "the client's SYN reached the listener late (held by the relay)") { $0.flags == .syn }
        let synAck = syn.flatMap { syn in segments.first { $0.id > syn.id && $0.sender == .server && $0.flags.contains([.syn, .ack]) && $0.ack == syn.seq &+ 1 } }
        let answered = WireCheck(description: "the server answered the stale SYN with a SYN+ACK (ack = old ISN + 1)", passed: synAck != nil,
                                 evidence: synAck.map(FaultChecks.describe) ?? "no SYN+ACK for it")
        let reset = synAck.flatMap { synAck in segments.first { $0.id > synAck.id && $0.sender == .client && $0.flags.contains(.rst) && $0.seq == synAck.ack } }
        let resetCheck = WireCheck(description: "the client's kernel answered the SYN+ACK with a RST (seq = its ack)", passed: reset != nil,
                                   evidence: reset.map(FaultChecks.describe) ?? "no RST")
        let third = segments.first { $0.sender == .client && $0.flags == .ack }
        let noThird = WireCheck(description: "no third segment: the client never ACKed, nothing was established", passed: third == nil,
                                evidence: third.map { "but " + FaultChecks.describe($0) } ?? "no ACK from the client")
        return [stale, answered, resetCheck, noThird]
    }
}

/// `old-segment`: why TIME_WAIT keeps the four-tuple. A data segment of an earlier connection,
/// delayed in the network, arrives twice: first at that connection's TIME_WAIT, which absorbs
/// it; then, after an RST cut TIME_WAIT short and the four-tuple was reused, at the new
/// connection, which rejects it as out of window with a duplicate ACK.
public struct OldSegmentScenario: FaultScenario {
    public init() {}
    public let name = "old-segment"
    public let summary = "fault: a delayed data segment of an old connection meets its TIME_WAIT, then (after an RST close) the reused four-tuple"
    public var faultRules: [FaultRule] { [] }
    static let oldData = "old data\n"
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "first connection", [.synSent, .established, .closeWait, .lastAck, .closed]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "closes first", [.synReceived, .established, .finWait1, .finWait2, .timeWait, .closed]),
            ScenarioTrack(.client, 2, "same four-tuple", [.synSent, .established]),
            ScenarioTrack(.server, 2, "same four-tuple", [.synReceived, .established]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.server, 1, .timeWait), KeyState(.server, 1, .closed), KeyState(.client, 2, .established), KeyState(.server, 2, .established)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        The server closed first, so its end of the first connection sat in TIME_WAIT. The lab replayed a copy of the \
        client's data segment, as a network path that delayed it would: TIME_WAIT absorbed it, answering with an ACK \
        of what it had already received, and no application saw the bytes. The client's kernel, which no longer had \
        that connection, answered the ACK with a RST, and the RST cut TIME_WAIT short (TIME-WAIT assassination, \
        RFC 1337; Linux allows it while net.ipv4.tcp_rfc1337 is 0). The client then reused the same address and port. When the old segment arrived again, the new connection's kernel \
        found its sequence number outside the new window (and its timestamp older than the last one seen, PAWS), \
        dropped it and sent a duplicate ACK: the old bytes did not reach recv(). Last, the lab itself placed the same \
        bytes inside the new window (no timestamp): the new connection accepted them and recv() returned another \
        connection's data. Keeping the four-tuple in TIME_WAIT for 2×MSL lets such segments die out first.
        """
    }

    public func run(_ lab: LabRun) throws {
        let relay = try lab.relay()
        let (listener, client, server) = try lab.establish()
        try lab.echo(Self.oldData, client: client, server: server)
        // The copy a slow path would deliver late: the client's data segment, as the relay saw it.
        guard let old = relay.records.first(where: { $0.sender == .client && $0.decoded.payloadLength > 0 }) else {
            throw ScenarioError("the relay saw no data segment from the client")
        }
        let clientPort = try client.socket.localAddress()
        try lab.close(server)
        let fin = lab.receive(client)
        guard fin.endOfStream else { throw ScenarioError("the client never saw the server's FIN") }
        try lab.close(client)
        guard lab.wait(server, for: .timeWait) else { throw ScenarioError("the server's end did not reach TIME_WAIT") }

        server.info("the lab replays the client's old data segment (a copy delayed in the network) toward the server's TIME_WAIT")
        let before = relay.records.count
        relay.inject(frame: old.frame.bytes, toward: .server, why: "a delayed copy of the first connection's data")
        // TIME_WAIT answers with an ACK; the client, which has no such connection any more,
        // answers that ACK with a RST, and the RST ends TIME_WAIT (RFC 1337's assassination).
        let reset = relay.wait(timeout: 1) { records in records.dropFirst(before).contains { $0.sender == .client && $0.decoded.flags.contains(.rst) } }
        guard reset else { throw ScenarioError("no RST from the client after TIME_WAIT's answer") }
        guard lab.wait(server, for: .closed, timeout: 1) else { throw ScenarioError("the RST did not end the server's TIME_WAIT") }

        let again = try lab.socket(.client, conn: 2, bindTo: clientPort)
        let address = try listener.socket.localAddress()
        try lab.startConnect(again, to: address)
        let server2 = try lab.accept(listener, conn: 2, others: [again])
        try lab.finishConnect(again, to: address, others: [server2])
        lab.wait(server2, for: .established, others: [again])

        server2.info("the lab replays the same old data segment into the new connection on the same four-tuple")
        relay.inject(frame: old.frame.bytes, toward: .server, why: "the first connection's data, arriving in the second")
        let got = lab.receive(server2, timeout: 0.3)
        if !got.bytes.isEmpty { throw ScenarioError("the new connection delivered \(got.bytes.count) old bytes to recv()") }
        server2.info("recv() got nothing: the old segment never reached the new connection's application")

        // The hazard, made by hand: the same bytes placed exactly where the new connection
        // expects its next data, without the old timestamp (PAWS would reject it).
        let records = relay.records
        guard let synAck = records.last(where: { $0.sender == .server && $0.decoded.flags.contains([.syn, .ack]) })?.decoded,
              let newSYN = records.last(where: { $0.sender == .client && $0.decoded.flags == .syn })?.decoded else {
            throw ScenarioError("the new connection's handshake is not on the record")
        }
        let forged = PacketCrafter.segment(from: newSYN.source, to: newSYN.destination, seq: newSYN.seq &+ 1, ack: synAck.seq &+ 1,
                                           flags: [.psh, .ack], payload: Array(Self.oldData.utf8))
        server2.info("the lab forges the old bytes into the new window (seq = the next byte expected, no timestamp): what TIME_WAIT exists to prevent")
        relay.inject(ipPacket: forged, toward: .server, why: "the lab placed the old data inside the new connection's window")
        let hazard = lab.receive(server2, count: Self.oldData.utf8.count, timeout: 1)
        guard hazard.bytes.count == Self.oldData.utf8.count else { throw ScenarioError("the forged in-window copy was not delivered") }
        server2.info("recv() returned \(hazard.bytes.count) bytes of the old connection's data as if the new peer had sent them")
        // Its ACK may be a delayed one (≥ 40 ms): keep the capture open for it.
        let end = newSYN.seq &+ 1 &+ UInt32(Self.oldData.utf8.count)
        relay.wait(timeout: 0.5) { $0.contains { $0.sender == .server && $0.decoded.flags.contains(.ack) && $0.decoded.ack == end } }
        lab.pause([server2], cause: "sampling after the forged segment")
    }

    public func wireChecks(_ segments: [WireSegment], events: [TraceEvent]) -> [WireCheck] {
        let injected = segments.filter { $0.fault?.name == "injected" }
        let data = injected.filter { $0.length > 0 }
        var checks: [WireCheck] = []
        // TIME_WAIT's answer: an ACK of what it already had (the client's FIN + 1).
        let fin = segments.first { $0.sender == .client && $0.flags.contains(.fin) && $0.fault == nil }
        if let first = data.first, let fin {
            let (check, _) = FaultChecks.acknowledged(segments, from: .server, after: first, end: fin.seq &+ fin.sequenceLength,
                                                      "TIME_WAIT absorbs the old segment: it answers with an ACK of the client's FIN, nothing more")
            checks.append(check)
        } else {
            checks.append(WireCheck(description: "the old segment was replayed into TIME_WAIT", passed: false, evidence: "no injected data or no client FIN"))
        }
        let rst = data.first.flatMap { first in segments.first { $0.id > first.id && $0.sender == .client && $0.flags.contains(.rst) } }
        checks.append(WireCheck(description: "the client's kernel, without that connection, answers TIME_WAIT's ACK with a RST", passed: rst != nil,
                                evidence: rst.map(FaultChecks.describe) ?? "no RST from the client"))
        checks.append(FaultChecks.state(events, .server, 1, from: .timeWait, to: .closed, after: rst, "the RST cuts the server's TIME_WAIT short"))
        // The new connection: its SYN on the same four-tuple, then the old segment and a duplicate ACK.
        let newSYN = rst.flatMap { rst in segments.first { $0.id > rst.id && $0.sender == .client && $0.flags == .syn } }
        let sameTuple = newSYN.map { $0.source == data.first?.source && $0.destination == data.first?.destination } ?? false
        checks.append(WireCheck(description: "a new connection on the same four-tuple", passed: sameTuple,
                                evidence: newSYN.map { "\(FaultChecks.describe($0)) from \($0.source)" } ?? "no new SYN"))
        if data.count >= 2, let syn = newSYN {
            let second = data[1]
            let serverISN = segments.first { $0.id > syn.id && $0.sender == .server && $0.flags.contains([.syn, .ack]) }?.seq
            let dupAck = segments.first { $0.id > second.id && $0.sender == .server && $0.flags == .ack && $0.length == 0 && $0.seq == (serverISN ?? 0) &+ 1 }
            let outside = Int32(bitPattern: second.seq &- (syn.seq &+ 1)) < 0 || Int32(bitPattern: second.seq &- (syn.seq &+ 1)) > 1 << 20
            checks.append(WireCheck(description: "the old segment's seq lies outside the new connection's window", passed: outside,
                                    evidence: "old seq \(second.seq), new client ISN \(syn.seq)"))
            checks.append(WireCheck(description: "the new connection answers it with a duplicate ACK (its ack unchanged)", passed: dupAck?.ack == syn.seq &+ 1,
                                    evidence: dupAck.map(FaultChecks.describe) ?? "no ACK after #\(second.id)"))
        } else {
            checks.append(WireCheck(description: "the old segment was replayed into the new connection", passed: false, evidence: "not on the record"))
        }
        // The forged in-window copy is accepted: the server's ACK moves past its bytes.
        if let forged = data.last, data.count >= 3 {
            let accepted = segments.first { $0.id > forged.id && $0.sender == .server && $0.flags.contains(.ack) && $0.ack == forged.seq &+ UInt32(forged.length) }
            checks.append(WireCheck(description: "placed inside the new window by the lab, the old bytes are accepted (the hazard)", passed: accepted != nil,
                                    evidence: accepted.map(FaultChecks.describe) ?? "no ACK covering #\(forged.id)"))
        }
        return checks
    }
}
