import Foundation
import Testing
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// What the scenario lab prints must be what happened, in the order it happened: each recv()
/// noted when it returns, the state a SYN caused tied to the SYN that was answered, and the
/// lab's own cleanup kept out of the scenario.
@Suite(.serialized, .enabled(if: !TimeWaitRoom.nearlyFull, TimeWaitRoom.reason)) struct LabFidelityTests {
    /// Data and the peer's FIN are both queued before one receive(): the note for the data
    /// read comes before recv() = 0, as the calls returned.
    @Test func receive_notesEachRecvAsItReturns() throws {
        let lab = LabRun(slowMotion: false)
        defer { lab.finish() }
        let (_, client, server) = try lab.establish()
        try lab.send(server, "0123456789")
        try lab.shutdownWrite(server)
        usleep(20_000)                       // both arrive on lo before the first recv()
        let got = lab.receive(client)
        #expect(got.bytes.count == 10 && got.endOfStream)
        let notes = lab.collector.events.filter { $0.side == .client && $0.kind == .info }.map(\.cause)
        let data = try #require(notes.firstIndex(of: "recv() got 10 bytes"), "\(notes)")
        let fin = try #require(notes.firstIndex(of: "recv() = 0: the peer's FIN arrived"), "\(notes)")
        #expect(data < fin, "\(notes)")
    }

    /// The handshake check names the SYN the SYN+ACK answered (the last copy), not a dropped one.
    @Test func handshakeCheck_citesTheAnsweredSYN() throws {
        let client = WireEndpoint(address: [127, 0, 0, 1], port: 40000)
        let server = WireEndpoint(address: [127, 0, 0, 1], port: 7007)
        func segment(_ id: Int, _ from: WireEndpoint, _ to: WireEndpoint, _ flags: TCPFlags, seq: UInt32, ack: UInt32 = 0) -> WireSegment {
            WireSegment(id: id, timestampNs: UInt64(id) * 1000, wallNs: 0, source: from, destination: to, flags: flags, seq: seq,
                        ack: ack, relativeSeq: 0, relativeAck: nil, length: 0, rawWindow: 512, scaledWindow: nil, options: TCPOptions())
        }
        let segments = [
            segment(4, client, server, .syn, seq: 100), segment(5, client, server, .syn, seq: 100),
            segment(6, client, server, .syn, seq: 100), segment(7, server, client, [.syn, .ack], seq: 900, ack: 101),
            segment(8, client, server, .ack, seq: 101, ack: 901),
        ]
        let check = try #require(SegmentExpectations.check("client-close", segments: segments).first { $0.description.hasPrefix("handshake") })
        #expect(check.passed)
        #expect(check.evidence.hasPrefix("#6 SYN seq=100 (earlier copies #4, #5 unanswered), #7 SYN+ACK"), "\(check.evidence)")
    }

    /// `EchoClient --scenario NAME --trace json --wire on`, as nobody when root can switch (the
    /// namespace path users get), else as is.
    static func scenario(_ name: String) throws -> [TraceEvent] {
        let arguments = ["--scenario", name, "--trace", "json", "--wire", "on"]
        let child = Capabilities.canRunBuiltExecutablesAsNobody
            ? try ChildProcess(UnprivilegedTests.setpriv!, ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                            Executables.url("EchoClient").path] + arguments)
            : try ChildProcess("EchoClient", arguments)
        #expect(child.wait(timeout: 60) == 0, "\(child.stdoutText)\n\(child.stderrText)")
        // The lab's trace goes where every trace goes: stderr.
        return child.stderrText.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
    }

    @Test(.enabled(if: WireEndToEndTests.canCapture, "needs root, or setpriv + user/net namespaces"))
    func backlogFull_synReceivedIsTheAnsweredSYN_andCleanupIsCut() throws {
        let events = try Self.scenario("backlog-full")
        let segments = events.compactMap(\.wire)
        let state = try #require(events.first { $0.side == .server && $0.conn == 2 && $0.to == .synReceived })
        let syn = try #require(segments.first { $0.id == state.segmentID }, "\(state.cause)")
        let synAck = try #require(segments.first { $0.flags == [.syn, .ack] && $0.ack == syn.seq &+ 1 })
        // The answered SYN: the last copy of this SYN before the SYN+ACK.
        let copies = segments.filter { $0.flags == .syn && $0.seq == syn.seq && $0.timestampNs <= synAck.timestampNs }
        #expect(copies.count >= 2, "the second client's SYN was retransmitted")
        #expect(copies.last?.id == syn.id, "segment #\(syn.id) of \(copies.map(\.id))")
        #expect(state.cause.hasPrefix("SYN received, answered with SYN+ACK #\(synAck.id)"), "\(state.cause)")
        #expect(!segments.contains { $0.flags.contains(.rst) }, "the lab's cleanup RSTs are cut from the capture")
    }

    @Test(.enabled(if: WireEndToEndTests.canCapture, "needs root, or setpriv + user/net namespaces"))
    func closeWaitLeak_cleanupIsCut_andTheTimeoutIsNotCredited() throws {
        let events = try Self.scenario("close-wait-leak")
        #expect(!events.compactMap(\.wire).contains { $0.flags.contains(.rst) }, "the lab's cleanup RST is cut")
        #expect(!events.contains { $0.cause.contains("dropped by tcp_fin_timeout") })
        #expect(events.contains { $0.side == .client && $0.cause.contains("would drop it") })
    }
}
