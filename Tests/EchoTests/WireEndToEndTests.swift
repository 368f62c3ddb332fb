import Foundation
import Testing
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// `--wire` end to end: the demo's segments and states in one trace, the arithmetic a textbook
/// draws, a pcapng read back by tools nobody here wrote, and the unprivileged path through a
/// user+net namespace.
@Suite(.serialized, .enabled(if: !TimeWaitRoom.nearlyFull, TimeWaitRoom.reason)) struct WireEndToEndTests {
    static let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let tshark = ["/usr/bin/tshark"].first { FileManager.default.isExecutableFile(atPath: $0) }
    /// Either this process may capture (root), or nobody can through a namespace of its own.
    static var canCapture: Bool { WireTracer.probe() == nil || Capabilities.canRunBuiltExecutablesAsNobody }

    /// Runs the demo (as nobody when root can switch, so the namespace path is the one tested).
    func demo(_ extra: [String]) throws -> ChildProcess {
        let arguments = ["--demo", "--trace", "json"] + extra
        let child = Capabilities.canRunBuiltExecutablesAsNobody
            ? try ChildProcess(UnprivilegedTests.setpriv!, ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                            Executables.url("EchoClient").path] + arguments)
            : try ChildProcess("EchoClient", arguments)
        #expect(child.wait(timeout: 60) == 0, "\(child.stderrText)")
        return child
    }

    @Test(.enabled(if: WireEndToEndTests.canCapture, "needs root, or setpriv + user/net namespaces"))
    func demo_showsSegmentsWithHandshakeArithmetic_andStatesAfterTheirSegments() throws {
        let events = try demo([]).events
        let segments = events.compactMap(\.wire)
        try #require(segments.count >= 10, "\(events.map(\.cause))")
        let syn = try #require(segments.first { $0.flags == .syn })
        let synAck = try #require(segments.first { $0.flags == [.syn, .ack] })
        let ack = try #require(segments.first { $0.flags == .ack && $0.sender == .client })
        #expect(syn.sender == .client && synAck.sender == .server)
        #expect(synAck.ack == syn.seq &+ 1, "a SYN consumes one sequence number")
        #expect(ack.ack == synAck.seq &+ 1)
        #expect(syn.relativeSeq == 0 && synAck.relativeAck == 1 && ack.relativeSeq == 1 && ack.relativeAck == 1)
        #expect(syn.options.mss != nil && syn.options.windowScale != nil)
        // Both FINs, each ACKed with FIN seq + 1.
        for fin in segments.filter({ $0.flags.contains(.fin) }) {
            #expect(segments.contains { $0.source == fin.destination && $0.flags.contains(.ack) && $0.ack == fin.seq &+ fin.sequenceLength })
        }
        #expect(segments.filter { $0.flags.contains(.fin) }.count == 2)
        // Ids are unique and in capture order.
        #expect(segments.map(\.id) == Array(1...segments.count))

        let byID = Dictionary(uniqueKeysWithValues: segments.map { ($0.id, $0) })
        let caused = events.filter { $0.kind == .state && $0.segmentID != nil }
        let clientEstablished = try #require(events.first { $0.side == .client && $0.from == .synSent && $0.to == .established })
        #expect(clientEstablished.segmentID == synAck.id)
        let closeWait = try #require(events.first { $0.side == .server && $0.to == .closeWait })
        #expect(byID[closeWait.segmentID ?? 0]?.flags.contains(.fin) == true)
        for state in caused {
            let segment = try #require(byID[state.segmentID ?? 0])
            #expect(state.timestampNs >= segment.timestampNs, "\(state.cause) stamped before segment #\(segment.id)")
            #expect(segment.destination.description == state.local, "a state is caused by a segment its socket received")
        }
    }

    @Test(.enabled(if: WireEndToEndTests.canCapture && WireEndToEndTests.tcpdump != nil,
                   "needs capture (root, or setpriv + namespaces) and tcpdump (apt-get install tcpdump)"))
    func pcap_readsBackInTcpdump_withStatesAsComments() throws {
        let path = "/tmp/socketkit-wire-\(getpid()).pcapng"
        defer { unlink(path) }
        let events = try demo(["--pcap", path]).events
        let segments = events.compactMap(\.wire)
        let dump = try ChildProcess(Self.tcpdump!, ["-nn", "-r", path])
        #expect(dump.wait() == 0, "\(dump.stderrText)")
        let lines = dump.stdoutText.split(separator: "\n")
        #expect(lines.count == segments.count)
        #expect(lines.first?.contains("Flags [S]") == true)
        #expect(lines.dropFirst().first?.contains("Flags [S.]") == true)
        guard let tshark = Self.tshark else { return }      // comments need tshark; tcpdump checked the packets
        let fields = try ChildProcess(tshark, ["-r", path, "-T", "fields", "-e", "frame.comment"])
        #expect(fields.wait() == 0, "\(fields.stderrText)")
        let comments = fields.stdoutText.split(separator: "\n").map(String.init)
        #expect(comments.count == segments.count)
        #expect(comments[1].contains("client #1 SYN_SENT → ESTABLISHED"), "\(comments)")
        #expect(comments.contains { $0.contains("server #1 ESTABLISHED → CLOSE_WAIT") }, "\(comments)")
    }

    @Test func wireOff_addsNoSegments_andPcapNeedsTheWire() throws {
        let child = try ChildProcess("EchoClient", ["--demo", "--trace", "json", "--wire", "off"])
        #expect(child.wait(timeout: 60) == 0)
        #expect(child.events.allSatisfy { $0.kind != .segment && $0.segmentID == nil })
        let usage = try ChildProcess("EchoClient", ["--demo", "--wire", "off", "--pcap", "/tmp/never.pcapng"])
        #expect(usage.wait() == 64)
        #expect(usage.stderrText.contains("--pcap needs the wire"))
    }

    /// The oracle: the kernel tracepoint's own state times (root) bracket each segment, the
    /// sender's state before it and the receiver's state after it.
    @Test(.enabled(if: geteuid() == 0 && KernelTracepoint.availability() == .available,
                   "needs root and the sock:inet_sock_set_state tracepoint"))
    func demo_asRoot_tracepointStateTimesBracketTheSegments() throws {
        let child = try ChildProcess("EchoClient", ["--demo", "--trace", "json", "--kernel-trace", "on", "--wire", "on"])
        #expect(child.wait(timeout: 60) == 0, "\(child.stderrText)")
        let events = child.events
        let segments = events.compactMap(\.wire)
        func kernel(_ side: TraceSide, _ from: TCPState, _ to: TCPState) throws -> TraceEvent {
            try #require(events.first { $0.side == side && $0.from == from && $0.to == to && $0.source == .tracepoint })
        }
        let syn = try #require(segments.first { $0.flags == .syn })
        let synAck = try #require(segments.first { $0.flags == [.syn, .ack] })
        #expect(try kernel(.client, .closed, .synSent).timestampNs <= syn.timestampNs)
        let established = try kernel(.client, .synSent, .established)
        #expect(synAck.timestampNs <= established.timestampNs)
        #expect(established.segmentID == synAck.id)
        let clientFIN = try #require(segments.first { $0.flags.contains(.fin) && $0.sender == .client })
        #expect(try kernel(.client, .established, .finWait1).timestampNs <= clientFIN.timestampNs)
        let closeWait = try kernel(.server, .established, .closeWait)
        #expect(clientFIN.timestampNs <= closeWait.timestampNs)
        #expect(closeWait.segmentID == clientFIN.id)
        let lastAck = try kernel(.server, .lastAck, .closed)
        let finalACK = try #require(segments.last)
        #expect(finalACK.timestampNs <= lastAck.timestampNs && lastAck.segmentID == finalACK.id)
    }

    /// The long-running programs with `--wire on` (root): each side writes the segments it
    /// captured; `--merge` folds the two captures into one and stamps both sides' states.
    @Test(.enabled(if: WireTracer.probe() == nil, "needs CAP_NET_RAW on the host (root)"))
    func serverAndClient_wireOn_mergeIntoOneLadderWithCauses() throws {
        let serverFile = "/tmp/socketkit-wire-server-\(getpid()).jsonl"
        let clientFile = "/tmp/socketkit-wire-client-\(getpid()).jsonl"
        defer { unlink(serverFile); unlink(clientFile) }
        let server = try ServerProcess(["--wire", "on"], traceFile: serverFile)
        let client = try ChildProcess("EchoClient", ["--port", String(server.port), "--trace", "json", "--trace-file", clientFile,
                                                     "--wire", "on", "hello"])
        #expect(client.wait() == 0, "\(client.stderrText)")
        // The server has closed its side (listener only left); its capture reads the rest at stop.
        #expect(waitForSockets(server.pid, atMost: 1, timeout: 10) <= 1, "\(socketsOn(port: server.port))")
        #expect(server.stop() == 0)
        let serverEvents = try TraceEvent.read(jsonLinesAt: serverFile)
        let clientEvents = try TraceEvent.read(jsonLinesAt: clientFile)
        let serverSegments = serverEvents.compactMap(\.wire), clientSegments = clientEvents.compactMap(\.wire)
        #expect(serverSegments.count >= 9 && clientSegments.count == serverSegments.count)
        #expect(serverEvents.contains { $0.kind == .info && $0.cause.hasPrefix("wire: \(serverSegments.count) segments captured on lo, none dropped") })
        let merged = WireMerge.join(serverEvents + clientEvents)
        let segments = merged.compactMap(\.wire)
        #expect(segments.count == serverSegments.count, "the two captures fold into one")
        #expect(segments.first?.flags == .syn && segments.first?.sender == .client)
        let closeWait = try #require(merged.first { $0.side == .server && $0.to == .closeWait })
        let fin = try #require(segments.first { $0.flags.contains(.fin) && $0.sender == .client })
        #expect(closeWait.segmentID == fin.id && closeWait.timestampNs >= fin.timestampNs)
    }

    @Test(.enabled(if: Capabilities.canRunBuiltExecutablesAsNobody, "needs root to switch to nobody with setpriv"))
    func server_wireOn_withoutPrivilege_isOneLineAndExit77() throws {
        let child = try ChildProcess(UnprivilegedTests.setpriv!, ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                                  Executables.url("EchoServer").path, "--port", "0", "--wire", "on"])
        #expect(child.wait() == 77)
        #expect(child.stderrText.contains("--wire on: capturing needs CAP_NET_RAW"), "\(child.stderrText)")
    }
}
