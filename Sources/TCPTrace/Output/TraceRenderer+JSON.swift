import SocketKit

/// JSON Lines: one object per event, every schema key always present (null when unknown),
/// so consumers can rely on the shape. Built by hand: no allocation-heavy encoder on the
/// server's path.
public enum JSONTraceRenderer {
    public static func render(_ e: TraceEvent) -> String {
        var out = "{"
        out.reserveCapacity(512)
        field(&out, "ts_ns", String(e.timestampNs), first: true)
        field(&out, "time", quoted(MonotonicClock.rfc3339(wallNanos: e.wallNs)))
        field(&out, "side", quoted(e.side.rawValue))
        field(&out, "pid", String(e.pid))
        field(&out, "conn", String(e.conn))
        field(&out, "local", e.local.map(quoted) ?? "null")
        field(&out, "peer", e.peer.map(quoted) ?? "null")
        field(&out, "cookie", e.cookie.map { String($0) } ?? "null")
        field(&out, "event", quoted(e.kind.rawValue))
        field(&out, "from", e.from.map { quoted($0.name) } ?? "null")
        field(&out, "to", e.to.map { quoted($0.name) } ?? "null")
        field(&out, "source", e.source.map { quoted($0.rawValue) } ?? "null")
        field(&out, "cause", quoted(e.cause))
        field(&out, "in_state_ns", e.inStateNs.map { String($0) } ?? "null")
        field(&out, "unexpected", e.unexpected ? "true" : "false")
        field(&out, "timer_ms", e.timerMs.map { String($0) } ?? "null")
        field(&out, "errno", e.errno.map { String($0) } ?? "null")
        field(&out, "errno_name", e.errno.map { quoted(Errno.name($0)) } ?? "null")
        field(&out, "bytes", e.byteCount.map { String($0) } ?? "null")
        field(&out, "data", e.bytes.map { quoted(ByteEscaping.escape($0, limit: 256)) } ?? "null")
        field(&out, "tcp_info", e.info.map(info) ?? "null")
        field(&out, "verdict", e.verdict.map { quoted($0.outcome.rawValue) } ?? "null")
        field(&out, "sent", e.verdict.map { String($0.sent) } ?? "null")
        field(&out, "received", e.verdict.map { String($0.received) } ?? "null")
        field(&out, "first_difference", e.verdict?.firstDifference.map { String($0) } ?? "null")
        field(&out, "segment", e.segmentID.map { String($0) } ?? "null")
        field(&out, "wire", e.wire.map(wire) ?? "null")
        out += "}"
        return out
    }

    static func info(_ i: TCPInfo) -> String {
        var out = "{"
        field(&out, "state", quoted(i.state.name), first: true)
        field(&out, "rtt_us", String(i.rttMicros))
        field(&out, "rttvar_us", String(i.rttVarMicros))
        field(&out, "retransmits", String(i.retransmits))
        field(&out, "total_retrans", String(i.totalRetrans))
        field(&out, "bytes_acked", String(i.bytesAcked))
        field(&out, "bytes_received", String(i.bytesReceived))
        field(&out, "snd_cwnd", String(i.sendCwnd))
        field(&out, "unacked", String(i.unacked))
        field(&out, "notsent_bytes", String(i.notSentBytes))
        field(&out, "snd_wnd", i.sendWindow.map { String($0) } ?? "null")
        return out + "}"
    }

    /// A segment's header, relative numbers by default (`seq`, `ack`, `sack`) and absolute
    /// (`seq_abs`, `ack_abs`, `sack_abs`); `ack` is null without the ACK flag. Options as tcpdump writes them, and each.
    static func wire(_ w: WireSegment) -> String {
        var out = "{"
        let sender = w.sender
        field(&out, "direction", sender.map { quoted($0 == .client ? "client→server" : "server→client") } ?? "null", first: true)
        field(&out, "client", sender.map { quoted($0 == .client ? "sent" : "received") } ?? "null")
        field(&out, "server", sender.map { quoted($0 == .server ? "sent" : "received") } ?? "null")
        field(&out, "src", quoted(w.source.description))
        field(&out, "dst", quoted(w.destination.description))
        field(&out, "flags", quoted(w.flags.description))
        field(&out, "seq", String(w.relativeSeq))
        field(&out, "ack", w.flags.contains(.ack) ? (w.relativeAck.map { String($0) } ?? "null") : "null")
        field(&out, "seq_abs", String(w.seq))
        field(&out, "ack_abs", w.flags.contains(.ack) ? String(w.ack) : "null")
        field(&out, "len", String(w.length))
        field(&out, "win", String(w.window))
        field(&out, "win_raw", String(w.rawWindow))
        field(&out, "win_exact", w.scaledWindow == nil ? "false" : "true")
        field(&out, "options", quoted(w.optionsSummary()))
        field(&out, "mss", w.options.mss.map { String($0) } ?? "null")
        field(&out, "sack_permitted", w.options.sackPermitted ? "true" : "false")
        field(&out, "wscale", w.options.windowScale.map { String($0) } ?? "null")
        field(&out, "ts_val", w.options.timestamp.map { String($0.value) } ?? "null")
        field(&out, "ts_ecr", w.options.timestamp.map { String($0.echoReply) } ?? "null")
        // SACK blocks name the receiver's sequence space, as `ack` does: relative like it, and absolute.
        let base = w.ackBase ?? 0
        field(&out, "sack", "[" + w.options.sackBlocks.map { "[\($0.left &- base),\($0.right &- base)]" }.joined(separator: ",") + "]")
        field(&out, "sack_abs", "[" + w.options.sackBlocks.map { "[\($0.left),\($0.right)]" }.joined(separator: ",") + "]")
        field(&out, "fault", w.fault.map { quoted($0.name) } ?? "null")
        field(&out, "fault_delay_ns", w.fault?.delayNs.map { String($0) } ?? "null")
        return out + "}"
    }

    @inline(__always)
    static func field(_ out: inout String, _ key: String, _ value: String, first: Bool = false) {
        if !first { out += "," }
        out += "\""
        out += key
        out += "\":"
        out += value
    }

    /// A JSON string literal; control characters become \u00XX.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
