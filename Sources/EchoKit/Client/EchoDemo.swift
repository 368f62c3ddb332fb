import Glibc
import SocketKit
import TCPTrace
import WireFaults

/// `EchoClient --demo`: an in-process server on a free loopback port, a client that sends a few
/// messages, the last one leaving in the same segment as its FIN (so its echo comes back over
/// the half-closed connection), drains and closes; then both sides' states as one timeline.
public enum EchoDemo {
    public struct Outcome: Sendable {
        public var events: [TraceEvent]
        public var matched: Bool
        /// Bytes the client read after its shutdown(SHUT_WR) returned (measured by the program).
        public var bytesAfterOurFIN: Int
        /// The capture's one-line summary when the wire was on.
        public var wireSummary: String?
        /// What the segments show (nil without the wire): the claims the demo prints, checked.
        public var wire: DemoWireFacts?
    }

    public static let messages = ["hello", "world", "this line is echoed after our FIN"]

    /// Runs the exchange and returns every trace event of both sides. Echoes go to `output`.
    /// `kernel`: the tracepoint source (`--kernel-trace`), shared by both sides; nil: unprivileged.
    /// `collector`: where both sides' events go (the caller's, to show them even on failure).
    /// `port`: the server's port (`--demo --port N`); 0 picks a free one.
    /// `wire`: capture the connection's segments (the caller checked it may); `pcapPath`: write them.
    /// `faults`: run over the fault wire with these rules (the caller entered the namespace);
    /// the relay is then the capture point.
    public static func run(host: String = "127.0.0.1", port: UInt16 = 0, kernel: TracepointSource? = nil,
                           collector: TraceCollector = TraceCollector(), wire: Bool = false, pcapPath: String? = nil,
                           faults: [FaultRule]? = nil, output: ([UInt8]) -> Void) throws -> Outcome {
        let faultWire = try faults.map { try FaultWire(rules: $0, insidePrivateNamespace: SlowMotion.isInsideNamespace) }
        let pair = try InProcessEcho(sink: collector, host: host, kernel: kernel, faults: faultWire) { $0.port = port }
        defer { pair.stopServer() }
        // Opened before connect(): the SYN must not pass before the filter names the port.
        let capture = wire && faultWire == nil ? try WireTracer(ports: [pair.client.configuration.port]) : nil
        var result = EchoClient.ExchangeResult()
        do {
            try pair.client.connect()
            result = try pair.client.exchange(messages: messages, lastAfterHalfClose: true, output: output)
        } catch {
            pair.client.noteFailure(error)
            pair.client.close()
            throw error
        }
        // Let the server finish its close and the followers catch LAST_ACK/TIME_WAIT (a lost
        // segment costs at least one RTO, 200 ms, more when a SYN's 1 s is involved).
        pair.settle(timeoutSeconds: faultWire == nil ? 2 : 4)
        pair.stopServer()
        pair.finishFollowing()
        var events = collector.events
        var summary: String?
        var facts: DemoWireFacts?
        if let capture {
            let run = try capture.finish(events: events, pcapPath: pcapPath)
            (events, summary, facts) = (run.events, run.summary, DemoWireFacts(run.segments))
        } else if let faultWire {
            let run = try faultWire.finish(events: events, pcapPath: pcapPath)
            (events, summary, facts) = (run.events, run.summary, DemoWireFacts(run.segments))
        }
        return Outcome(events: events, matched: result.matched, bytesAfterOurFIN: result.bytesAfterOurFIN, wireSummary: summary,
                       wire: facts)
    }
}

/// What the demo's segments show about its own claims: whether echoed bytes crossed the wire
/// after the client's FIN, and what each fault did.
public struct DemoWireFacts: Sendable {
    /// The client's first FIN, as captured.
    public var clientFIN: WireSegment?
    /// Payload bytes the server sent after that FIN (each sequence range counted once, lost
    /// copies not counted).
    public var serverBytesAfterClientFIN = 0
    /// One line per faulted segment: what happened, and what the kernels did about it.
    public var faultLines: [String] = []

    public init(_ segments: [WireSegment]) {
        clientFIN = segments.first { $0.sender == .client && $0.flags.contains(.fin) }
        if let fin = clientFIN {
            var counted: Set<UInt32> = []
            for segment in segments where segment.sender == .server && segment.id > fin.id && segment.length > 0
                && segment.fault != .dropped && counted.insert(segment.seq).inserted {
                serverBytesAfterClientFIN += segment.length
            }
        }
        for segment in segments {
            guard let fault = segment.fault else { continue }
            var line = "#\(segment.id) \(segment.sender?.rawValue ?? "?") \(segment.flags) seq=\(segment.relativeSeq): \(fault.note)"
            if fault == .dropped {
                line += Self.consequence(of: segment, in: segments)
            }
            faultLines.append(line)
        }
    }

    /// What the kernels did about a lost segment: its sender sends one that occupies sequence
    /// space (data, SYN, FIN) again; a bare ACK is never resent as such, so its loss shows as the
    /// peer sending what it had not seen acknowledged again, and that copy being answered.
    static func consequence(of lost: WireSegment, in segments: [WireSegment]) -> String {
        let later = segments.filter { $0.id > lost.id && $0.fault != .dropped }
        let sender = lost.sender?.rawValue ?? "sender"
        if lost.sequenceLength > 0 {
            guard let again = later.first(where: { $0.sender == lost.sender && $0.seq == lost.seq && $0.flags == lost.flags }) else {
                return "; not sent again before the run ended"
            }
            return "; the \(sender)'s kernel sent it again \(gap(lost, again)) later as #\(again.id)" + probeNote(lost, again)
        }
        // A bare ACK: the peer's unacknowledged segment comes again, and is answered.
        let earlier = segments.filter { $0.id < lost.id && $0.sender != lost.sender && $0.sequenceLength > 0 }
        guard let resent = later.first(where: { copy in copy.sender != lost.sender && earlier.contains { $0.seq == copy.seq && $0.flags == copy.flags } }),
              let original = earlier.last(where: { $0.seq == resent.seq && $0.flags == resent.flags }) else {
            return "; a bare ACK is never sent again as such, and nothing was resent before the run ended"
        }
        let peer = resent.sender?.rawValue ?? "peer"
        var text = "; a bare ACK is never sent again as such: the \(peer), never acknowledged, sent #\(original.id) (\(original.flags)) again \(gap(original, resent)) later as #\(resent.id)"
            + probeNote(original, resent)
        if let answer = later.first(where: { $0.id > resent.id && $0.sender == lost.sender && $0.flags.contains(.ack) && $0.ack == resent.seq &+ resent.sequenceLength }) {
            text += ", and the \(sender) answered it with #\(answer.id)"
        }
        return text
    }

    static func gap(_ first: WireSegment, _ second: WireSegment) -> String {
        TextTraceRenderer.duration(second.timestampNs - first.timestampNs)
    }

    /// Linux's tail loss probe (RFC 8985): with more than one segment unacknowledged it probes
    /// after ~2 RTT + 2 ms; with one, after 2 RTT + 200 ms (the RTO's minimum).
    static func probeNote(_ first: WireSegment, _ second: WireSegment) -> String {
        second.timestampNs - first.timestampNs < 100_000_000
            ? " (a tail loss probe: more than one segment was unacknowledged, so Linux probed after about two round trips instead of waiting 200 ms)"
            : ""
    }
}
