import Testing
import SocketKit
@testable import TCPTrace

@Suite struct SegmentAttributionTests {
    let client = WireEndpoint(address: [127, 0, 0, 1], port: 40000)
    let server = WireEndpoint(address: [127, 0, 0, 1], port: 7007)

    func segment(_ id: Int, _ from: WireEndpoint, _ to: WireEndpoint, _ flags: TCPFlags, seq: UInt32, ack: UInt32 = 0,
                 at ns: UInt64) -> WireSegment {
        WireSegment(id: id, timestampNs: ns, wallNs: 0, source: from, destination: to, flags: flags, seq: seq, ack: ack,
                    relativeSeq: 0, relativeAck: nil, length: 0, rawWindow: 512, scaledWindow: nil, options: TCPOptions())
    }

    func state(_ side: TraceSide, _ from: TCPState, _ to: TCPState, at ns: UInt64, _ source: ObservationSource,
               local: WireEndpoint, peer: WireEndpoint?) -> TraceEvent {
        TraceEvent(timestampNs: ns, wallNs: 0, side: side, conn: 1, local: local.description, peer: peer?.description,
                   kind: .state, from: from, to: to, source: source, cause: "test")
    }

    /// Client closes first; the server's FIN+ACK both ACKs the client's FIN and carries its own.
    var exchange: [WireSegment] {
        [
            segment(1, client, server, .syn, seq: 100, at: 10),
            segment(2, server, client, [.syn, .ack], seq: 500, ack: 101, at: 20),
            segment(3, client, server, .ack, seq: 101, ack: 501, at: 30),
            segment(4, client, server, [.fin, .ack], seq: 101, ack: 501, at: 40),
            segment(5, server, client, [.fin, .ack], seq: 501, ack: 102, at: 50),
            segment(6, client, server, .ack, seq: 102, ack: 502, at: 60),
        ]
    }

    @Test func join_setsSenders_andStampsStatesWithTheirCause() {
        let events = [
            state(.client, .closed, .synSent, at: 25, .inferred, local: client, peer: server),
            state(.client, .synSent, .established, at: 25, .tcpInfo, local: client, peer: server),
            state(.client, .established, .finWait1, at: 45, .inferred, local: client, peer: server),
            state(.client, .finWait1, .finWait2, at: 70, .inferred, local: client, peer: server),
            state(.client, .finWait2, .timeWait, at: 70, .sockDiag, local: client, peer: server),
            state(.server, .established, .closeWait, at: 45, .tcpInfo, local: server, peer: client),
            state(.server, .lastAck, .closed, at: 65, .tracepoint, local: server, peer: client),
        ]
        let joined = SegmentAttribution.join(events: events, segments: exchange)
        let segments = joined.compactMap(\.wire)
        #expect(segments.map(\.sender) == [.client, .server, .client, .client, .server, .client])
        func find(_ side: TraceSide, _ to: TCPState) -> TraceEvent? { joined.first { $0.side == side && $0.to == to && $0.kind == .state } }
        #expect(find(.client, .established)?.segmentID == 2)
        #expect(find(.client, .synSent)?.segmentID == nil)
        #expect(find(.client, .synSent)?.timestampNs == 10, "dated by the SYN it sent")
        #expect(find(.client, .finWait1)?.timestampNs == 40, "dated by the FIN it sent")
        // One FIN+ACK: FIN_WAIT_1 → FIN_WAIT_2 (its ACK) and FIN_WAIT_2 → TIME_WAIT (its FIN).
        #expect(find(.client, .finWait2)?.segmentID == 5)
        #expect(find(.client, .finWait2)?.timestampNs == 50)
        #expect(find(.client, .timeWait)?.segmentID == 5)
        #expect(find(.server, .closeWait)?.segmentID == 4)
        #expect(find(.server, .closed)?.segmentID == 6)
        // Segment events sit before the states they caused at equal times.
        let order = joined.map { $0.kind == .segment ? "s\($0.segmentID ?? 0)" : "\($0.side.rawValue):\($0.to?.name ?? "")" }
        #expect(order.firstIndex(of: "s5")! < order.firstIndex(of: "client:FIN_WAIT_2")!)
        #expect(order.firstIndex(of: "client:SYN_SENT")! < order.firstIndex(of: "s1")!)
    }

    @Test func observedState_neverTakesALaterSegment() {
        // Observed ESTABLISHED at 15, before the SYN+ACK (20) was captured: no cause claimed.
        let events = [state(.client, .synSent, .established, at: 15, .tcpInfo, local: client, peer: server)]
        let joined = SegmentAttribution.join(events: events, segments: exchange)
        #expect(joined.first { $0.kind == .state }?.segmentID == nil)
    }

    @Test func refused_rstComesFromTheUntracedSide_andClosesSynSent() {
        let events = [state(.client, .synSent, .closed, at: 30, .tcpInfo, local: client, peer: server)]
        let segments = [segment(1, client, server, .syn, seq: 9, at: 10), segment(2, server, client, [.rst, .ack], seq: 0, ack: 10, at: 20)]
        let joined = SegmentAttribution.join(events: events, segments: segments)
        #expect(joined.compactMap(\.wire).map(\.sender) == [.client, .server])
        #expect(joined.first { $0.kind == .state }?.segmentID == 2)
    }

    @Test func listener_isNotStampedWithItsConnectionsSegments() {
        let events = [state(.server, .listen, .closed, at: 100, .tcpInfo, local: server, peer: nil)]
        let joined = SegmentAttribution.join(events: events, segments: exchange + [segment(7, client, server, .rst, seq: 102, at: 90)])
        #expect(joined.first { $0.kind == .state }?.segmentID == nil)
    }

    /// backlog-full: the listener's queue was full, so the kernel dropped SYN #1 and #2 (the
    /// client sent the same SYN again); SYN #3 got the SYN+ACK #4 (ack = its seq + 1). The
    /// server's inferred LISTEN → SYN_RECEIVED is #3's doing, dated at #3, and says so.
    @Test func droppedSYN_isNotTheCause_theAnsweredOneIs() throws {
        let segments = [
            segment(1, client, server, .syn, seq: 100, at: 10),
            segment(2, client, server, .syn, seq: 100, at: 1010),
            segment(3, client, server, .syn, seq: 100, at: 2030),
            segment(4, server, client, [.syn, .ack], seq: 500, ack: 101, at: 2031),
            segment(5, client, server, .ack, seq: 101, ack: 501, at: 2032),
        ]
        var inferred = state(.server, .listen, .synReceived, at: 2040, .inferred, local: server, peer: client)
        inferred.cause = "between LISTEN and ESTABLISHED: accept() returned the connection"
        let events = [inferred, state(.server, .synReceived, .established, at: 2040, .tcpInfo, local: server, peer: client)]
        let joined = SegmentAttribution.join(events: events, segments: segments)
        let synReceived = try #require(joined.first { $0.kind == .state && $0.to == .synReceived })
        #expect(synReceived.segmentID == 3)
        #expect(synReceived.timestampNs == 2030)
        #expect(synReceived.cause == "SYN received, answered with SYN+ACK #4; inferred between LISTEN and ESTABLISHED")
        #expect(joined.first { $0.kind == .state && $0.to == .established }?.segmentID == 5)
        // Without a SYN+ACK captured, only the last copy may still be the cause.
        let unanswered = SegmentAttribution.join(events: events, segments: Array(segments.prefix(3)))
        #expect(unanswered.first { $0.kind == .state && $0.to == .synReceived }?.segmentID == 3)
    }

    @Test func segmentEvent_roundTripsThroughJSON() throws {
        var options = TCPOptions()
        options.mss = 65495; options.windowScale = 7; options.sackPermitted = true
        options.timestamp = .init(value: 5, echoReply: 6)
        var original = WireSegment(id: 3, timestampNs: 1234, wallNs: 0, source: client, destination: server, sender: .client,
                                   flags: [.syn, .ack], seq: 4_000_000_000, ack: 77, relativeSeq: 0, relativeAck: 1, ackBase: 76, length: 0,
                                   rawWindow: 65483, scaledWindow: 65483, options: options)
        let line = JSONTraceRenderer.render(TraceEvent(segment: original, conn: 1))
        #expect(line.contains("\"event\":\"segment\""))
        #expect(line.contains("\"segment\":3"))
        #expect(line.contains("\"direction\":\"client→server\",\"client\":\"sent\",\"server\":\"received\""))
        let back = try #require(TraceEvent(jsonLine: line[...]))
        #expect(back.kind == .segment && back.segmentID == 3)
        original.wallNs = 0
        #expect(back.wire == original)
        let v6 = try #require(WireEndpoint(text: "[2001:db8::1]:80"))
        #expect(v6.description == "[2001:db8::1]:80")
    }
}
