import SocketKit

/// Human-readable trace lines, aligned in columns like tcpstates/ss:
/// `  0.000412 server #1 127.0.0.1:7007 ⇄ 127.0.0.1:53422  ESTABLISHED → CLOSE_WAIT  recv()=0: peer sent FIN  [tcp_info, 41 ms in ESTABLISHED]`
public struct TextTraceRenderer: Sendable {
    /// Times print relative to this CLOCK_MONOTONIC instant (the trace's start).
    public var baseNs: UInt64
    public var color: Bool

    public init(baseNs: UInt64, color: Bool) {
        self.baseNs = baseNs
        self.color = color
    }

    public func render(_ e: TraceEvent) -> String {
        let seconds = Self.seconds(e.timestampNs >= baseNs ? e.timestampNs - baseNs : 0)
        var line = Self.pad(seconds, 10, left: true) + " "
        line += Self.pad(e.side.rawValue, 6) + " " + Self.pad("#\(e.conn)", 4) + " "
        line += Self.pad(e.local ?? "-", 21, left: true) + " ⇄ " + Self.pad(e.peer ?? "-", 21) + "  "
        switch e.kind {
        case .state:
            let from = e.from?.name ?? "—"
            let to = e.to?.name ?? "?"
            let transition = Self.pad(from, 11, left: true) + " → " + Self.pad(to, 12)
            line += paint(transition, e.source == .inferred ? "2" : (e.unexpected ? "31" : stateColor(e.to)))
            line += " " + e.cause
            var notes: [String] = [e.source?.rawValue ?? "?"]
            if let id = e.segmentID { notes.append("segment #\(id)") }
            if let ns = e.inStateNs, let from = e.from { notes.append("\(Self.duration(ns)) in \(from.name)") }
            if let ms = e.timerMs { notes.append("timer \(Self.duration(UInt64(ms) * 1_000_000)) left") }
            if e.unexpected { notes.append("NOT ALLOWED BY RFC 9293") }
            line += "  " + paint("[" + notes.joined(separator: ", ") + "]", e.unexpected ? "31" : "2")
            if let info = e.info, e.source != .inferred { line += " " + paint(Self.infoTokens(info), "2") }
        case .warning:
            line += paint("WARNING " + e.cause, "33")
        case .error:
            var text = "ERROR " + e.cause
            if let code = e.errno { text += " (\(Errno.name(code)))" }
            line += paint(text, "31")
        case .data:
            line += paint("DATA ", "36") + e.cause
            if let bytes = e.bytes { line += " \"" + ByteEscaping.escape(bytes, limit: 80) + "\"" }
        case .verdict:
            line += paint("VERDICT " + e.cause, e.verdict?.ok == true ? "32" : "31")
        case .syscall, .info:
            line += e.cause
        case .segment:
            line += paint((e.wire?.sender == .server ? "◀── " : "──▶ ") + e.cause, "1")
            var notes = ["wire #\(e.segmentID ?? 0)"]
            if let options = e.wire?.options, !options.isEmpty { notes.append(options.summary) }
            line += "  " + paint("[" + notes.joined(separator: ", ") + "]", "2")
        }
        return line
    }

    /// ss-style `key:value` tokens, only those that say something.
    static func infoTokens(_ i: TCPInfo) -> String {
        var parts: [String] = []
        if i.rttMicros > 0 {
            parts.append("rtt:\(ms(i.rttMicros))/\(ms(i.rttVarMicros))")
        }
        if i.sendCwnd > 0 { parts.append("cwnd:\(i.sendCwnd)") }
        if i.bytesAcked > 0 { parts.append("bytes_acked:\(i.bytesAcked)") }
        if i.bytesReceived > 0 { parts.append("bytes_received:\(i.bytesReceived)") }
        if i.unacked > 0 { parts.append("unacked:\(i.unacked)") }
        if i.totalRetrans > 0 { parts.append("retrans:\(i.retransmits)/\(i.totalRetrans)") }
        if let window = i.sendWindow, window == 0, i.state != .listen, i.state != .closed, i.bytesReceived + i.bytesAcked > 1 { parts.append("snd_wnd:0") }
        return parts.joined(separator: " ")
    }

    static func ms(_ micros: UInt32) -> String {
        let whole = micros / 1000, frac = (micros % 1000) / 10
        return "\(whole)." + (frac < 10 ? "0" : "") + "\(frac)"
    }

    private func stateColor(_ state: TCPState?) -> String {
        switch state {
        case .established?: return "32"
        case .closeWait?, .timeWait?: return "33"
        case .closed?: return "35"
        default: return "36"
        }
    }

    private func paint(_ text: String, _ code: String) -> String {
        color ? "\u{1b}[\(code)m\(text)\u{1b}[0m" : text
    }

    /// `0.000412` seconds with microsecond resolution.
    public static func seconds(_ ns: UInt64) -> String {
        let micros = ns / 1000
        let frac = String(micros % 1_000_000)
        return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - frac.count) + frac
    }

    /// A short human duration: `17 µs`, `41 ms`, `1.2 s`, `59 s`.
    public static func duration(_ ns: UInt64) -> String {
        if ns < 1_000_000 { return "\(ns / 1000) µs" }
        if ns < 1_000_000_000 { return "\(ns / 1_000_000) ms" }
        if ns < 10_000_000_000 { return "\(ns / 1_000_000_000).\((ns / 100_000_000) % 10) s" }
        return "\(ns / 1_000_000_000) s"
    }

    package static func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let count = text.count
        guard count < width else { return text }
        let fill = String(repeating: " ", count: width - count)
        return left ? fill + text : text + fill
    }
}
