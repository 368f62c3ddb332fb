import SocketKit

/// Human-readable trace lines, aligned in columns like tcpstates/ss:
/// `  0.000412 server #1 127.0.0.1:7007 ⇄ 127.0.0.1:53422  ESTABLISHED → CLOSE_WAIT  recv()=0: peer sent FIN  [tcp_info, 41 ms in ESTABLISHED]`
///
/// With a terminal `width` the lines fit it (`fitted`): above 100 columns the same columns with
/// the cause wrapped onto indented continuation lines; at 100 or fewer a compact layout that
/// prints each connection's addresses once, on a line of their own. Pipes and files (no
/// width) keep one full line per event.
public struct TextTraceRenderer: Sendable {
    /// Times print relative to this CLOCK_MONOTONIC instant (the trace's start).
    public var baseNs: UInt64
    public var color: Bool
    /// Terminal columns; nil for pipes and files.
    public var width: Int?
    /// Compact layout: the addresses last printed per connection.
    private var addressesShown: [String: String] = [:]

    /// At or below this many columns the compact layout is used.
    public static let compactWidth = 100

    public init(baseNs: UInt64, color: Bool, width: Int? = nil) {
        self.baseNs = baseNs
        self.color = color
        self.width = width.map { max($0, 40) }
    }

    /// The event as the terminal should show it: `render` when there is no width, otherwise
    /// one or more lines (joined by newlines) no wider than `width`.
    public mutating func fitted(_ e: TraceEvent) -> String {
        guard let width else { return render(e) }
        let seconds = Self.pad(Self.seconds(e.timestampNs >= baseNs ? e.timestampNs - baseNs : 0), 10, left: true)
        let who = Self.pad(e.side.rawValue, 6) + " " + Self.pad("#\(e.conn)", 4)
        var out = ""
        var head = seconds + " " + who + " "
        if width <= Self.compactWidth {
            // Addresses once per connection (again only if they change).
            let key = "\(e.side.rawValue)#\(e.conn)"
            if e.local != nil || e.peer != nil {
                let addresses = "\(e.local ?? "?") ⇄ \(e.peer ?? "?")"
                if addressesShown[key] != addresses {
                    addressesShown[key] = addresses
                    out += TextWrap.fit(String(repeating: " ", count: 11) + who, firstColumns: 22,
                                        words: TextWrap.words(addresses, "2"), width: width, indent: 22, color: color) + "\n"
                }
            }
        } else {
            head += addressColumns(e)
        }
        var headColumns = head.count
        let prefixColumns = headColumns
        var words: [TextWrap.Word] = []
        if e.kind == .state {
            let transition = Self.pad(e.from?.name ?? "—", 11, left: true) + " → " + Self.pad(e.to?.name ?? "?", 12)
            head += paint(transition, transitionColor(e))
            headColumns += transition.count
            words = TextWrap.words(e.cause) + Self.noteWords(notes(e), e.unexpected ? "31" : "2")
            if let info = e.info, e.source != .inferred { words += TextWrap.words(Self.infoTokens(info), "2") }
        } else {
            words = messageWords(e)
        }
        let indent = width >= 160 ? prefixColumns : 11
        return out + TextWrap.fit(head, firstColumns: headColumns, words: words, width: width, indent: indent, color: color)
    }

    /// `127.0.0.1:7007 ⇄ 127.0.0.1:53422  `, or blanks of that width when neither is known.
    private func addressColumns(_ e: TraceEvent) -> String {
        if e.local == nil && e.peer == nil { return String(repeating: " ", count: 21 + 3 + 21 + 2) }
        return Self.pad(e.local ?? "-", 21, left: true) + " ⇄ " + Self.pad(e.peer ?? "-", 21) + "  "
    }

    private func transitionColor(_ e: TraceEvent) -> String {
        e.source == .inferred ? "2" : (e.unexpected ? "31" : stateColor(e.to))
    }

    private func notes(_ e: TraceEvent) -> [String] {
        var notes: [String] = [e.source?.rawValue ?? "?"]
        if let id = e.segmentID { notes.append("segment #\(id)") }
        if let ns = e.inStateNs, let from = e.from { notes.append("\(Self.duration(ns)) in \(from.name)") }
        if let ms = e.timerMs { notes.append("timer \(Self.duration(UInt64(ms) * 1_000_000)) left") }
        if e.unexpected { notes.append("NOT ALLOWED BY RFC 9293") }
        return notes
    }

    /// `[tcp_info, 41 ms in ESTABLISHED]` as words that break only between notes.
    static func noteWords(_ notes: [String], _ code: String) -> [TextWrap.Word] {
        notes.enumerated().map { index, note in
            TextWrap.Word((index == 0 ? "[" : "") + note + (index == notes.count - 1 ? "]" : ","), code)
        }
    }

    private func messageWords(_ e: TraceEvent) -> [TextWrap.Word] {
        switch e.kind {
        case .warning: return TextWrap.words("WARNING " + e.cause, "33")
        case .error: return TextWrap.words(Self.errorText(e), "31")
        case .verdict: return TextWrap.words("VERDICT " + e.cause, e.verdict?.ok == true ? "32" : "31")
        case .data:
            var words = [TextWrap.Word("DATA", "36")] + TextWrap.words(e.cause)
            if let bytes = e.bytes { words.append(TextWrap.Word("\"" + ByteEscaping.escape(bytes, limit: 80) + "\"")) }
            return words
        case .syscall, .info, .state: return TextWrap.words(e.cause)
        case .segment:
            var words = [TextWrap.Word(e.wire?.sender == .server ? "◀──" : "──▶", "1")] + TextWrap.words(e.cause, "1")
            var notes = ["wire #\(e.segmentID ?? 0)"]
            if let wire = e.wire, !wire.options.isEmpty { notes.append(wire.optionsSummary()) }
            words += Self.noteWords(notes, "2")
            return words
        }
    }

    /// `ERROR connect(127.0.0.1:7999): Connection refused (ECONNREFUSED)`: the errno name once,
    /// even when the cause (a SystemCallError's text) already ends with it.
    static func errorText(_ e: TraceEvent) -> String {
        var text = "ERROR " + e.cause
        if let code = e.errno {
            let name = "(\(Errno.name(code)))"
            if !e.cause.contains(name) { text += " " + name }
        }
        return text
    }

    public func render(_ e: TraceEvent) -> String {
        let seconds = Self.seconds(e.timestampNs >= baseNs ? e.timestampNs - baseNs : 0)
        var line = Self.pad(seconds, 10, left: true) + " "
        line += Self.pad(e.side.rawValue, 6) + " " + Self.pad("#\(e.conn)", 4) + " "
        line += addressColumns(e)
        switch e.kind {
        case .state:
            let from = e.from?.name ?? "—"
            let to = e.to?.name ?? "?"
            let transition = Self.pad(from, 11, left: true) + " → " + Self.pad(to, 12)
            line += paint(transition, transitionColor(e))
            line += " " + e.cause
            line += "  " + paint("[" + notes(e).joined(separator: ", ") + "]", e.unexpected ? "31" : "2")
            if let info = e.info, e.source != .inferred { line += " " + paint(Self.infoTokens(info), "2") }
        case .warning:
            line += paint("WARNING " + e.cause, "33")
        case .error:
            line += paint(Self.errorText(e), "31")
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
            if let wire = e.wire, !wire.options.isEmpty { notes.append(wire.optionsSummary()) }
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

    /// A short human duration: `17 µs`, `41 ms`, `1.2 s`, `59 s`, rounded to the nearest shown
    /// unit (61.98 s is `62 s`, not `61 s`). The unit is chosen after rounding, so 999.7 ms is `1.0 s`.
    public static func duration(_ ns: UInt64) -> String {
        if ns < 999_500 { return "\((ns + 500) / 1000) µs" }
        if ns < 999_500_000 { return "\((ns + 500_000) / 1_000_000) ms" }
        if ns < 9_950_000_000 {
            let tenths = (ns + 50_000_000) / 100_000_000
            return "\(tenths / 10).\(tenths % 10) s"
        }
        return "\(ns / 1_000_000_000 + (ns % 1_000_000_000 >= 500_000_000 ? 1 : 0)) s"
    }

    package static func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let count = text.count
        guard count < width else { return text }
        let fill = String(repeating: " ", count: width - count)
        return left ? fill + text : text + fill
    }
}
