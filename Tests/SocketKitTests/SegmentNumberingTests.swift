import Testing
import SocketKit
@testable import TCPTrace

@Suite struct SegmentNumberingTests {
    let client = WireEndpoint(address: [127, 0, 0, 1], port: 40000)
    let server = WireEndpoint(address: [127, 0, 0, 1], port: 7007)

    func segment(_ from: WireEndpoint, _ to: WireEndpoint, _ flags: TCPFlags, seq: UInt32, ack: UInt32 = 0,
                 window: UInt16 = 512, length: Int = 0, wscale: UInt8? = nil) -> DecodedTCPSegment {
        var options = TCPOptions()
        options.windowScale = wscale
        return DecodedTCPSegment(source: from, destination: to, flags: flags, seq: seq, ack: ack, window: window,
                                 options: options, payloadLength: length)
    }

    @Test func handshake_relativeNumbers_countTheSYNAsOne() {
        var numbering = SegmentNumbering()
        let x: UInt32 = 0xFFFF_FFF0, y: UInt32 = 77      // the client's ISN wraps around 2^32
        let syn = numbering.number(segment(client, server, .syn, seq: x, window: 65495, wscale: 7), timestampNs: 1, wallNs: 1)
        let synAck = numbering.number(segment(server, client, [.syn, .ack], seq: y, ack: x &+ 1, window: 65483, wscale: 7), timestampNs: 2, wallNs: 2)
        let ackSegment = numbering.number(segment(client, server, .ack, seq: x &+ 1, ack: y + 1, window: 512), timestampNs: 3, wallNs: 3)
        let data = numbering.number(segment(client, server, [.psh, .ack], seq: x &+ 1, ack: y + 1, window: 512, length: 5), timestampNs: 4, wallNs: 4)
        let fin = numbering.number(segment(client, server, [.fin, .ack], seq: x &+ 6, ack: y + 1), timestampNs: 5, wallNs: 5)
        #expect([syn.id, synAck.id, ackSegment.id, data.id, fin.id] == [1, 2, 3, 4, 5])
        #expect(syn.relativeSeq == 0 && syn.relativeAck == nil)
        #expect(synAck.relativeSeq == 0 && synAck.relativeAck == 1)
        #expect(ackSegment.relativeSeq == 1 && ackSegment.relativeAck == 1)
        #expect(data.sequenceLength == 5 && fin.relativeSeq == 6 && fin.sequenceLength == 1)
        #expect(syn.label() == "SYN seq=0 win=65495")
        #expect(synAck.label() == "SYN+ACK seq=0 ack=1 win=65483")
        #expect(synAck.label(absolute: true) == "SYN+ACK seq=77 ack=4294967281 win=65483")
        // SYN windows are never scaled; after both SYNs with wscale 7, 512 << 7.
        #expect(syn.scaledWindow == 65495)
        #expect(ackSegment.scaledWindow == 65536)
        #expect(ackSegment.label() == "ACK seq=1 ack=1 win=65536 len=0")
    }

    /// A SACK block names the receiver's sequence space, as `ack` does: shown relative to the
    /// same ISN (`sack {1001:1101}` next to `ack=1`), absolute only on request and in JSON `sack_abs`.
    @Test func sackBlocks_areRelativeLikeAck() throws {
        var numbering = SegmentNumbering()
        let x: UInt32 = 3_526_358_000, y: UInt32 = 0xFFFF_FF00      // the server's ISN wraps
        _ = numbering.number(segment(client, server, .syn, seq: x), timestampNs: 1, wallNs: 1)
        _ = numbering.number(segment(server, client, [.syn, .ack], seq: y, ack: x &+ 1), timestampNs: 2, wallNs: 2)
        var dup = segment(client, server, .ack, seq: x &+ 1, ack: y &+ 1)
        dup.options.sackBlocks = [.init(left: y &+ 1001, right: y &+ 1101)]
        let sack = numbering.number(dup, timestampNs: 3, wallNs: 3)
        #expect(sack.relativeAck == 1)
        #expect(sack.optionsSummary() == "sack {1001:1101}")
        #expect(sack.optionsSummary(absolute: true) == "sack {\(y &+ 1001):\(y &+ 1101)}")
        var event = TraceEvent(segment: sack, conn: 1)
        event.timestampNs = 3
        let json = JSONTraceRenderer.render(event)
        #expect(json.contains("\"sack\":[[1001,1101]]"), "\(json)")
        #expect(json.contains("\"sack_abs\":[[\(y &+ 1001),\(y &+ 1101)]]"), "\(json)")
        #expect(json.contains("sack {1001:1101}"), "\(json)")
        let back = try #require(TraceEvent(jsonLine: Substring(json))?.wire)
        #expect(back.ackBase == y)
    }

    @Test func windowScale_needsBothSYNsWithTheOption() {
        var numbering = SegmentNumbering()
        _ = numbering.number(segment(client, server, .syn, seq: 1, wscale: 7), timestampNs: 1, wallNs: 1)
        let early = numbering.number(segment(client, server, .ack, seq: 2, ack: 5), timestampNs: 2, wallNs: 2)
        #expect(early.scaledWindow == nil)                 // peer's SYN not seen: unknown
        _ = numbering.number(segment(server, client, [.syn, .ack], seq: 100, ack: 2), timestampNs: 3, wallNs: 3)   // no wscale
        let after = numbering.number(segment(client, server, .ack, seq: 2, ack: 101, window: 512), timestampNs: 4, wallNs: 4)
        #expect(after.scaledWindow == 512)                 // scaling off: the field is the window
    }

    @Test func newSYNWithOtherISN_restartsTheConversation_retransmissionDoesNot() {
        var numbering = SegmentNumbering()
        _ = numbering.number(segment(client, server, .syn, seq: 1000), timestampNs: 1, wallNs: 1)
        let again = numbering.number(segment(client, server, .syn, seq: 1000), timestampNs: 2, wallNs: 2)
        #expect(again.relativeSeq == 0)
        let rst = numbering.number(segment(server, client, [.rst, .ack], seq: 0, ack: 1001), timestampNs: 3, wallNs: 3)
        #expect(rst.relativeAck == 1 && rst.flags.description == "RST+ACK")
        let next = numbering.number(segment(client, server, .syn, seq: 5000), timestampNs: 4, wallNs: 4)
        #expect(next.relativeSeq == 0)
        let reply = numbering.number(segment(server, client, [.syn, .ack], seq: 9, ack: 5001), timestampNs: 5, wallNs: 5)
        #expect(reply.relativeAck == 1 && reply.relativeSeq == 0)
    }

    @Test func capacity_forgetsLeastRecentlySeen() {
        var numbering = SegmentNumbering(capacity: 4)
        for port in UInt16(1)...10 {
            _ = numbering.number(segment(WireEndpoint(address: [127, 0, 0, 1], port: port), server, .syn, seq: 1),
                                 timestampNs: UInt64(port), wallNs: 0)
        }
        let late = numbering.number(segment(server, WireEndpoint(address: [127, 0, 0, 1], port: 10), [.syn, .ack], seq: 50, ack: 2),
                                    timestampNs: 11, wallNs: 0)
        #expect(late.relativeAck == 1)                     // the most recent one is still known
    }

    @Test func ipv6Text_followsRFC5952() {
        #expect(WireEndpoint.ipv6Text([UInt8](repeating: 0, count: 15) + [1]) == "::1")
        #expect(WireEndpoint.ipv6Text([0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]) == "2001:db8::1")
        #expect(WireEndpoint.ipv6Text([UInt8](repeating: 0, count: 10) + [0xff, 0xff, 127, 0, 0, 1]) == "::ffff:127.0.0.1")
    }
}
