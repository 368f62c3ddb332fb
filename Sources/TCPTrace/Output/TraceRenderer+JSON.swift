import SocketKit

/// JSON Lines, format version 2 (docs/TRACE-FORMAT.md, docs/trace.schema.json): one object per
/// event carrying only the keys that apply to it, never `null`. Version 1 wrote every key of
/// every event type (a demo event averaged 739 bytes, 14 of its 27 keys null).
///
/// Written byte by byte into a reused buffer (`TraceBytes`): no String per key, no encoder.
/// One line per key below, so a new key is one new line.
public enum JSONTraceRenderer {
    /// The `v` key: the format version. 2 = lean (absent instead of null).
    public static let formatVersion = 2

    public static func render(_ e: TraceEvent) -> String {
        var out = TraceBytes(capacity: 512)
        render(e, into: &out)
        return out.string
    }

    package static func render(_ e: TraceEvent, into out: inout TraceBytes) {
        var second = RFC3339Second()
        var plain = PlainStrings(remembering: false)
        let timestamp = appendHead(e, into: &out, second: &second)
        appendIdentity(e, into: &out)
        appendBody(e, into: &out, timestamp: timestamp, plain: &plain)
    }

    /// The same line, its socket's members copied from `identities` when they were rendered
    /// before, its time's second from `second`, its cause unscanned when `plain` knows it
    /// (the trace writer's path).
    package static func render(_ e: TraceEvent, into out: inout TraceBytes, identities: inout IdentityFragments,
                               second: inout RFC3339Second, plain: inout PlainStrings) {
        let timestamp = appendHead(e, into: &out, second: &second)
        if !identities.appendRemembered(for: e, into: &out) {
            let start = out.count
            appendIdentity(e, into: &out)
            identities.remember(for: e, renderedFrom: start, in: out)
        }
        appendBody(e, into: &out, timestamp: timestamp, plain: &plain)
    }

    /// `{"v":2,"ts_ns":` and `,"time":"`, each one literal (the object's opening, two keys and
    /// the version were five appends; callgrind). TraceRendererTests checks them against
    /// `formatVersion` and the member writers.
    static let headOpening: StaticString = #"{"v":2,"ts_ns":"#
    static let timeKey: StaticString = #","time":""#

    /// Returns where `ts_ns`'s digits are in `out`, for `earliest_ns`/`latest_ns` to copy.
    private static func appendHead(_ e: TraceEvent, into out: inout TraceBytes, second: inout RFC3339Second) -> Range<Int> {
        out.append(headOpening)
        let digits = out.count
        out.append(e.timestampNs)
        let timestamp = digits..<out.count
        out.append(timeKey)
        TraceTime.appendRFC3339(e.wallNs, to: &out, reusing: &second)
        out.append(byte: UInt8(ascii: "\""))
        out.needsComma = true
        return timestamp
    }

    /// What every event of one socket repeats (`IdentityFragments`); always after a member.
    private static func appendIdentity(_ e: TraceEvent, into out: inout TraceBytes) {
        out.member("side", static: e.side.staticName)
        out.member("pid", e.pid)
        out.member("conn", e.conn)
        if let local = e.local { out.member("local", local) }
        if let peer = e.peer { out.member("peer", peer) }
        if let cookie = e.cookie { out.member("cookie", cookie) }
    }

    /// `timestamp`: where the line's `ts_ns` digits are. A kernel-dated state's `earliest_ns` and
    /// `latest_ns` are that same number, copied (formatting it twice more was ~250 instructions
    /// a line, callgrind).
    private static func appendBody(_ e: TraceEvent, into out: inout TraceBytes, timestamp: Range<Int>,
                                   plain: inout PlainStrings) {
        // Always after a member (the head's, the identity's): the literals carry their comma.
        out.append(e.kind.jsonEventMember)
        if let from = e.from {
            if let members = from.jsonMembers { out.append(members.from) } else { out.member("from", state: from) }
        }
        if let to = e.to {
            if let members = to.jsonMembers { out.append(members.to) } else { out.member("to", state: to) }
        }
        if let source = e.source { out.append(source.jsonSourceMember) }
        out.key("cause")
        out.append(byte: UInt8(ascii: "\""))
        plain.appendEscaped(e.causeHead, into: &out)
        if let call = e.seenAt {
            out.append("; seen at ")
            plain.appendEscaped(call, into: &out)
        }
        out.append(byte: UInt8(ascii: "\""))
        if let ns = e.inStateNs { out.member("in_state_ns", ns) }
        if e.unexpected { out.member("unexpected", literal: "true") }
        if let ms = e.timerMs { out.member("timer_ms", UInt64(ms)) }
        if let code = e.errno { out.member("errno", code); out.member("errno_name", Errno.name(code)) }
        if let count = e.byteCount { out.member("bytes", count) }
        if let bytes = e.bytes { out.member("data", ByteEscaping.escape(bytes, limit: 256)) }
        if let info = e.info { out.key("tcp_info"); tcpInfo(info, into: &out) }
        if let verdict = e.verdict {
            out.member("verdict", verdict.outcome.rawValue)
            out.member("sent", verdict.sent)
            out.member("received", verdict.received)
            if let first = verdict.firstDifference { out.member("first_difference", first) }
        }
        if let id = e.segmentID { out.member("segment", id) }
        if let wire = e.wire { out.key("wire"); segment(wire, into: &out) }
        if let ns = e.earliestNs { out.member("earliest_ns", ns, sameAs: e.timestampNs, at: timestamp) }
        if let ns = e.latestNs { out.member("latest_ns", ns, sameAs: e.timestampNs, at: timestamp) }
        if let attempt = e.attempt { out.member("try", attempt) }
        if let process = e.process { out.member("process", process) }        // TCPWatch: the owner's command
        if let state = e.heldState { out.member("state", state: state) }       // TCPWatch: what a warning is about
        out.closeObject()
    }

    static func tcpInfo(_ i: TCPInfo, into out: inout TraceBytes) {
        out.openObject()
        out.member("state", state: i.state)
        out.member("rtt_us", UInt64(i.rttMicros))
        out.member("rttvar_us", UInt64(i.rttVarMicros))
        out.member("retransmits", UInt64(i.retransmits))
        out.member("total_retrans", UInt64(i.totalRetrans))
        out.member("bytes_acked", i.bytesAcked)
        out.member("bytes_received", i.bytesReceived)
        out.member("snd_cwnd", UInt64(i.sendCwnd))
        out.member("unacked", UInt64(i.unacked))
        out.member("notsent_bytes", UInt64(i.notSentBytes))
        if let window = i.sendWindow { out.member("snd_wnd", UInt64(window)) }
        out.closeObject()
    }

    /// A segment's header, relative numbers (`seq`, `ack`, `sack`) and absolute (`seq_abs`,
    /// `ack_abs`, `sack_abs`); the acks only with the ACK flag, `ack` only once the receiver's
    /// ISN is known. Options as tcpdump writes them, and each one that is present.
    static func segment(_ w: WireSegment, into out: inout TraceBytes) {
        out.openObject()
        if let sender = w.sender {
            out.member("direction", sender == .client ? "client→server" : "server→client")
            out.member("client", sender == .client ? "sent" : "received")
            out.member("server", sender == .server ? "sent" : "received")
        }
        out.member("src", w.source.description)
        out.member("dst", w.destination.description)
        out.member("flags", w.flags.description)
        out.member("seq", UInt64(w.relativeSeq))
        if w.flags.contains(.ack), let ack = w.relativeAck { out.member("ack", UInt64(ack)) }
        out.member("seq_abs", UInt64(w.seq))
        if w.flags.contains(.ack) { out.member("ack_abs", UInt64(w.ack)) }
        out.member("len", w.length)
        out.member("win", UInt64(w.window))
        out.member("win_raw", UInt64(w.rawWindow))
        out.member("win_exact", literal: w.scaledWindow == nil ? "false" : "true")
        out.member("options", w.optionsSummary())
        if let mss = w.options.mss { out.member("mss", UInt64(mss)) }
        if w.options.sackPermitted { out.member("sack_permitted", literal: "true") }
        if let scale = w.options.windowScale { out.member("wscale", UInt64(scale)) }
        if let stamp = w.options.timestamp { out.member("ts_val", UInt64(stamp.value)); out.member("ts_ecr", UInt64(stamp.echoReply)) }
        // SACK blocks name the receiver's sequence space, as `ack` does: relative like it, and absolute.
        if !w.options.sackBlocks.isEmpty {
            let base = w.ackBase ?? 0
            out.key("sack"); blocks(w.options.sackBlocks.map { ($0.left &- base, $0.right &- base) }, into: &out)
            out.key("sack_abs"); blocks(w.options.sackBlocks.map { ($0.left, $0.right) }, into: &out)
        }
        if let fault = w.fault { out.member("fault", fault.name) }
        if let delay = w.fault?.delayNs { out.member("fault_delay_ns", delay) }
        out.closeObject()
    }

    /// `[[left,right],...]`
    static func blocks(_ blocks: [(UInt32, UInt32)], into out: inout TraceBytes) {
        out.append(byte: UInt8(ascii: "["))
        for (index, block) in blocks.enumerated() {
            if index > 0 { out.append(byte: UInt8(ascii: ",")) }
            out.append(byte: UInt8(ascii: "["))
            out.append(UInt64(block.0))
            out.append(byte: UInt8(ascii: ","))
            out.append(UInt64(block.1))
            out.append(byte: UInt8(ascii: "]"))
        }
        out.append(byte: UInt8(ascii: "]"))
    }

    /// A JSON string literal; control characters become \u00XX.
    public static func quoted(_ text: String) -> String {
        var out = TraceBytes(capacity: text.utf8.count + 2)
        out.appendJSONString(text)
        return out.string
    }
}

/// JSON objects member by member, commas and quotes included. `needsComma` tracks the
/// object being written; a nested object closes as a value, so the next key gets its comma.
extension TraceBytes {
    mutating func openObject() { append(byte: UInt8(ascii: "{")); needsComma = false }
    mutating func closeObject() { append(byte: UInt8(ascii: "}")); needsComma = true }

    /// `,"name":` in one write (four appends were ~120 instructions a key, 16 keys an event).
    /// Inlined, so the literal's length is a constant and its copy no memcpy call (~55
    /// instructions a key as a call; callgrind).
    @inline(__always)
    mutating func key(_ name: StaticString) {
        name.withUTF8Buffer { name in
            appendKey(name, comma: needsComma)
        }
        needsComma = true
    }

    /// A literal value: `true`, `false`, or a quoted constant.
    mutating func member(_ name: StaticString, literal: StaticString) { key(name); append(literal) }
    mutating func member(_ name: StaticString, _ value: String) { key(name); appendJSONString(value) }
    /// A name of ours that needs no escaping (a side, an event kind, a source), quoted without
    /// the escaping scan or a String (`TraceNames.swift`).
    mutating func member(_ name: StaticString, static value: StaticString) {
        key(name)
        append(byte: UInt8(ascii: "\""))
        append(value)
        append(byte: UInt8(ascii: "\""))
    }

    /// A state's name (`UNKNOWN(n)` escaped like any string).
    mutating func member(_ name: StaticString, state: TCPState) {
        guard let value = state.staticName else { member(name, state.name); return }
        member(name, static: value)
    }
    mutating func member(_ name: StaticString, _ value: UInt64) { key(name); append(value) }
    /// `value`, copied from `digits` when it equals the number written there (`written`).
    mutating func member(_ name: StaticString, _ value: UInt64, sameAs written: UInt64, at digits: Range<Int>) {
        key(name)
        if value == written { appendCopy(of: digits) } else { append(value) }
    }
    mutating func member<I: BinaryInteger>(_ name: StaticString, _ value: I) { key(name); append(int: value) }
}
