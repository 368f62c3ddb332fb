import Glibc
import Synchronization
import Testing
@testable import EchoKit
import SocketKit
import TCPTrace

/// Issue 22 item 3: the lab's captured segments reach the live view while the scenario runs,
/// in time order with the states, each once, numbered as the final ladder numbers them.
@Suite("Live lab") struct LiveLabTests {
    /// What the live view printed, with when (CLOCK_MONOTONIC) each piece was printed.
    final class Printed: Sendable {
        let rows = Mutex<[(ns: UInt64, text: String)]>([])
        /// Set by the scenario: whether the handshake's rows were printed while it ran.
        let seenDuringRun = Mutex<Bool?>(nil)
        var text: String { rows.locked { $0.map(\.text).joined() } }
        func add(_ text: String) { rows.locked { $0.append((MonotonicClock.now(), text)) } }
        /// The segment rows (one line per row: no width), by the id after the arrow.
        var segmentRows: [Int: [String]] {
            var found: [Int: [String]] = [:]
            for line in text.split(separator: "\n") where line.contains("seq=") {
                guard let match = line.firstMatch(of: /[─▶✕┄] *#([0-9]+)/), let id = Int(match.1) else { continue }
                found[id, default: []].append(String(line))
            }
            return found
        }
    }

    /// client-close's start, then waits (bounded) inside the run until the live view has printed
    /// the handshake's segments: they must come while the scenario runs, not when it ends.
    struct HandshakeSeenLive: LabScenario {
        let printed: Printed
        var name: String { "handshake-seen-live" }
        var summary: String { "a handshake, watched until its segments are printed live" }
        var tracks: [ScenarioTrack] { [] }
        func keyStates(slowMotion: Bool) -> [KeyState] { [] }
        func explanation(slowMotion: Bool) -> String { "test scenario" }
        func run(_ lab: LabRun) throws {
            let (_, client, server) = try lab.establish()
            let seen = lab.watch([client, server], timeout: 2, cause: "sampling") {
                let rows = printed.segmentRows
                return [1, 2, 3].allSatisfy { rows[$0] != nil }
            }
            printed.seenDuringRun.locked { $0 = seen }
            try lab.echo("live\n", client: client, server: server)
            try lab.close(client)
            _ = lab.receive(server)
            try lab.close(server)
            lab.settle()
        }
    }

    @Test("held rows come out in time order: a segment read after the state it caused is printed above it")
    func heldRowsInTimeOrder() throws {
        let printed = Printed()
        let live = LabLiveView(color: false, width: nil) { printed.add($0) }
        live.begin(attempt: 1)
        live.hold()
        let client = "127.0.0.1:40000", server = "127.0.0.1:5000"
        let listen = TraceEvent(timestampNs: 1_000, side: .server, conn: 0, local: server, kind: .state, from: .closed, to: .listen,
                                source: .tcpInfo, cause: "listen()")
        let established = TraceEvent(timestampNs: 3_000, side: .client, conn: 1, local: client, peer: server, kind: .state,
                                     from: .synSent, to: .established, source: .tcpInfo, cause: "read after the SYN+ACK")
        live.emit(listen)
        live.emit(established)
        #expect(printed.text.isEmpty, "held until released: \(printed.text)")
        let synAck = try #require(Self.segment(from: server, to: client, flags: [.syn, .ack], atNs: 2_000))
        live.add(segment: synAck)
        live.release(upTo: 2_500)
        let first = printed.text
        #expect(first.contains("CLOSED → LISTEN") && first.contains("SYN+ACK") && !first.contains("SYN_SENT → ESTABLISHED"),
                "up to 2.5 µs: \(first)")
        // Sent by the server (its address is the listener's): drawn right to left.
        #expect(first.contains("◀"), "\(first)")
        live.release(upTo: .max)
        let lines = printed.text.split(separator: "\n").map(String.init)
        let order = ["CLOSED → LISTEN", "SYN+ACK", "SYN_SENT → ESTABLISHED"].map { key in lines.firstIndex { $0.contains(key) } }
        #expect(order == order.sorted { ($0 ?? .max) < ($1 ?? .max) } && !order.contains(nil), "\(lines)")
        // Not held any more: the next row prints at once.
        live.emit(TraceEvent(timestampNs: 4_000, side: .client, conn: 1, local: client, kind: .warning, cause: "after the feed ended"))
        #expect(printed.text.contains("after the feed ended"))
    }

    @Test("the capture's segments are printed while the scenario runs, each once, numbered as in the final ladder",
          .enabled(if: WireTracer.probe() == nil, "needs CAP_NET_RAW on the host (root) for the lab's capture"))
    func segmentsLiveDuringTheRun() throws {
        let printed = Printed()
        let live = LabLiveView(color: false, width: nil) { printed.add($0) }
        let scenario = HandshakeSeenLive(printed: printed)
        let outcome = ScenarioRunner.run(scenario, slowMotion: false, wire: true, live: live)
        #expect(printed.seenDuringRun.locked { $0 } == true,
                "the handshake's segments were not printed within 2 s while the scenario ran: \(printed.text)")
        let final = outcome.events.compactMap(\.wire)
        let rows = printed.segmentRows
        #expect(!final.isEmpty, "no segment captured: \(outcome.wireSummary ?? "")")
        #expect(rows.values.allSatisfy { $0.count == 1 }, "a segment printed twice: \(rows.filter { $0.value.count > 1 })")
        #expect(Set(rows.keys) == Set(final.map(\.id)), "live \(rows.keys.sorted()) vs final \(final.map(\.id))")
        for segment in final {
            #expect(rows[segment.id]?.first?.contains(segment.label()) == true,
                    "segment #\(segment.id) \(segment.label()) live as \(rows[segment.id] ?? [])")
        }
        // The live rows are in time order (they were held until the capture was read up to them).
        let times = printed.text.split(separator: "\n").compactMap { Double($0.split(separator: " ").first ?? "") }
        #expect(times == times.sorted(), "\(times)")
    }

    static func segment(from source: String, to destination: String, flags: TCPFlags, atNs ns: UInt64) -> WireSegment? {
        guard let from = WireEndpoint(text: source), let to = WireEndpoint(text: destination) else { return nil }
        return WireSegment(id: 1, timestampNs: ns, wallNs: Int64(ns), source: from, destination: to, flags: flags, seq: 0, ack: 1,
                           relativeSeq: 0, relativeAck: 1, ackBase: 0, length: 0, rawWindow: 65_535, scaledWindow: 65_535,
                           options: TCPOptions())
    }
}
