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
        // A captured segment belongs to the wire, not to a socket of ours (a closed port's RST
        // has no server socket at all): its direction is in the arrow.
        let who = e.kind == .segment ? Self.pad("wire", 11) : Self.pad(e.side.rawValue, 6) + " " + Self.pad("#\(e.conn)", 4)
        var out = ""
        var head = seconds + " " + who + " "
        if width <= Self.compactWidth {
            // Addresses once per connection (again only if they change).
            let key = e.kind == .segment ? "wire" : "\(e.side.rawValue)#\(e.conn)"
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
        var out = TraceBytes()
        appendAddressColumns(e, into: &out)
        return out.string
    }

    private func appendAddressColumns(_ e: TraceEvent, into out: inout TraceBytes) {
        if e.local == nil && e.peer == nil { out.append(repeating: UInt8(ascii: " "), count: 21 + 3 + 21 + 2); return }
        // Addresses are ASCII (digits, dots, colons, brackets, hex): bytes are columns. Both
        // copied into one reservation (two padded appends were ~590 instructions a line).
        (e.local ?? "-").withUTF8Bytes { local in
            (e.peer ?? "-").withUTF8Bytes { peer in
                let arrow: StaticString = " ⇄ "
                let leftFill = max(0, 21 - local.count), rightFill = max(0, 21 - peer.count)
                let total = leftFill + local.count + arrow.utf8CodeUnitCount + peer.count + rightFill + 2
                out.appendFixed(total) { at in
                    var at = at
                    at.initialize(repeating: UInt8(ascii: " "), count: leftFill); at += leftFill
                    if let base = local.baseAddress { at.initialize(from: base, count: local.count) }; at += local.count
                    at.initialize(from: arrow.utf8Start, count: arrow.utf8CodeUnitCount); at += arrow.utf8CodeUnitCount
                    if let base = peer.baseAddress { at.initialize(from: base, count: peer.count) }; at += peer.count
                    at.initialize(repeating: UInt8(ascii: " "), count: rightFill + 2)
                }
            }
        }
    }

    private func transitionColor(_ e: TraceEvent) -> String {
        e.source == .inferred ? "2" : (e.unexpected ? "31" : stateColor(e.to))
    }

    /// `tcp_info, segment #3, 41 ms in ESTABLISHED, timer 59 s left`: how the state was seen.
    private func notes(_ e: TraceEvent) -> [String] {
        var out = TraceBytes()
        appendNotes(e, into: &out)
        return out.string.split(separator: ", ").map(String.init)
    }

    private func appendNotes(_ e: TraceEvent, into out: inout TraceBytes) {
        if let source = e.source { out.append(source.staticName) } else { out.append(byte: UInt8(ascii: "?")) }
        if let id = e.segmentID { out.append(", segment #"); out.append(int: id) }
        if let ns = e.inStateNs, let from = e.from {
            out.append(", "); Self.appendDuration(ns, into: &out); out.append(" in "); out.append(from)
        }
        if let ms = e.timerMs { out.append(", timer "); Self.appendDuration(UInt64(ms) * 1_000_000, into: &out); out.append(" left") }
        if e.unexpected { out.append(", NOT ALLOWED BY RFC 9293") }
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
        var out = TraceBytes(capacity: 256)
        render(e, into: &out)
        return out.string
    }

    /// One full line (no newline) into `out`: the writer thread's path for pipes and files,
    /// written into its reused buffer without building Strings for the common events.
    package func render(_ e: TraceEvent, into out: inout TraceBytes) {
        appendTime(e, into: &out)
        appendIdentity(e, into: &out)
        appendBody(e, into: &out)
    }

    /// The same line, its socket's columns copied from `identities` when they were rendered
    /// before (the trace writer's path; a segment's columns are the wire's, not a socket's).
    package func render(_ e: TraceEvent, into out: inout TraceBytes, identities: inout IdentityFragments) {
        appendTime(e, into: &out)
        if e.kind == .segment {
            appendIdentity(e, into: &out)
        } else if !identities.appendRemembered(for: e, into: &out) {
            let start = out.count
            appendIdentity(e, into: &out)
            identities.remember(for: e, renderedFrom: start, in: out)
        }
        appendBody(e, into: &out)
    }

    private func appendTime(_ e: TraceEvent, into out: inout TraceBytes) {
        Self.appendTimeColumn(e.timestampNs >= baseNs ? e.timestampNs - baseNs : 0, into: &out)
    }

    /// `seconds(ns)` right-aligned in 10 columns and a space, in one reservation written in
    /// place, two digits at a time (two number appends and a pad were ~330 instructions a line,
    /// one digit at a time ~165; callgrind).
    static func appendTimeColumn(_ ns: UInt64, into out: inout TraceBytes) {
        let micros = ns / 1000
        var whole = micros / 1_000_000
        let fraction = Int(micros % 1_000_000)
        var digits = 1
        var probe = whole
        while probe >= 10 { probe /= 10; digits += 1 }
        let fill = max(0, 10 - (digits + 7))
        let pairs = TraceBytes.digitPairs
        out.appendFixed(fill + digits + 8) { start in
            start.initialize(repeating: UInt8(ascii: " "), count: fill)
            var cursor = start + fill + digits
            repeat {
                cursor -= 1
                cursor.pointee = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: whole % 10)
                whole /= 10
            } while whole > 0
            cursor = start + fill + digits
            cursor.pointee = UInt8(ascii: ".")
            func two(_ pair: Int, at offset: Int) {
                cursor[offset] = pairs[2 &* pair]
                cursor[offset + 1] = pairs[2 &* pair &+ 1]
            }
            two(fraction / 10_000, at: 1); two(fraction / 100 % 100, at: 3); two(fraction % 100, at: 5)
            start[fill + digits + 7] = UInt8(ascii: " ")
        }
    }

    /// `server #17  127.0.0.1:7007 ⇄ 127.0.0.1:53422  `: what every event of one socket repeats.
    private func appendIdentity(_ e: TraceEvent, into out: inout TraceBytes) {
        if e.kind == .segment {
            out.append("wire", padTo: 11)
        } else {
            out.append(e.side == .server ? "server" : "client" as StaticString)   // both 6 columns
            out.append(byte: UInt8(ascii: " "))
            let id = out.count
            out.append(byte: UInt8(ascii: "#"))
            out.append(int: e.conn)
            out.pad(from: id, to: 4)
        }
        out.append(byte: UInt8(ascii: " "))
        appendAddressColumns(e, into: &out)
    }

    private func appendBody(_ e: TraceEvent, into out: inout TraceBytes) {
        switch e.kind {
        case .state:
            // Opened and closed around inline code, not a closure: a closure capturing `e`
            // copied the event (every string in it retained) twice a line.
            let copied = !color && e.to.map { TransitionColumns.append(from: e.from, to: $0, into: &out) } == true
            if !copied { appendTransition(e, into: &out) }
            out.append(byte: UInt8(ascii: " "))
            out.append(e.causeHead)
            if let call = e.seenAt { out.append("; seen at "); out.append(call) }
            out.append("  ")
            paintStart(e.unexpected ? "31" : "2", &out)
            out.append(byte: UInt8(ascii: "["))
            appendNotes(e, into: &out)
            out.append(byte: UInt8(ascii: "]"))
            paintEnd(&out)
            if let info = e.info, e.source != .inferred {
                out.append(byte: UInt8(ascii: " "))
                paint("2", &out) { Self.appendInfoTokens(info, into: &$0) }
            }
        case .warning:
            paint("33", &out) { $0.append("WARNING "); $0.append(e.cause) }
        case .error:
            paint("31", &out) { $0.append(Self.errorText(e)) }
        case .data:
            paint("36", &out) { $0.append("DATA ") }
            out.append(e.cause)
            if let bytes = e.bytes {
                out.append(" \"")
                out.appendEscaped(bytes, limit: 80)
                out.append(byte: UInt8(ascii: "\""))
            }
        case .verdict:
            paint(e.verdict?.ok == true ? "32" : "31", &out) { $0.append("VERDICT "); $0.append(e.cause) }
        case .syscall, .info:
            out.append(e.cause)
        case .segment:
            paint("1", &out) { $0.append(e.wire?.sender == .server ? "◀── " : "──▶ "); $0.append(e.cause) }
            var notes = ["wire #\(e.segmentID ?? 0)"]
            if let wire = e.wire, !wire.options.isEmpty { notes.append(wire.optionsSummary()) }
            out.append("  ")
            paint("2", &out) { $0.append("[" + notes.joined(separator: ", ") + "]") }
        }
    }

    /// `  SYN_RECEIVED → ESTABLISHED `, coloured when the terminal is: the path for colour and
    /// unknown states (`TransitionColumns` copies the plain columns).
    func appendTransition(_ e: TraceEvent, into out: inout TraceBytes) {
        paintStart(transitionColor(e), &out)
        if let from = e.from { out.append(from, padTo: 11, left: true) } else { out.append("—", padTo: 11, left: true) }
        out.append(" → ")
        if let to = e.to { out.append(to, padTo: 12) } else { out.append(ascii: "?", padTo: 12) }
        paintEnd(&out)
    }

    /// ss-style `key:value` tokens, only those that say something.
    static func infoTokens(_ i: TCPInfo) -> String {
        var out = TraceBytes()
        appendInfoTokens(i, into: &out)
        return out.string
    }

    static func appendInfoTokens(_ i: TCPInfo, into out: inout TraceBytes) {
        let start = out.count
        func token(_ name: StaticString, _ out: inout TraceBytes) {
            if out.count > start { out.append(byte: UInt8(ascii: " ")) }
            out.append(name)
        }
        if i.rttMicros > 0 {
            token("rtt:", &out); appendMilliseconds(i.rttMicros, into: &out)
            out.append(byte: UInt8(ascii: "/")); appendMilliseconds(i.rttVarMicros, into: &out)
        }
        if i.sendCwnd > 0 { token("cwnd:", &out); out.append(UInt64(i.sendCwnd)) }
        if i.bytesAcked > 0 { token("bytes_acked:", &out); out.append(i.bytesAcked) }
        if i.bytesReceived > 0 { token("bytes_received:", &out); out.append(i.bytesReceived) }
        if i.unacked > 0 { token("unacked:", &out); out.append(UInt64(i.unacked)) }
        if i.totalRetrans > 0 {
            token("retrans:", &out); out.append(UInt64(i.retransmits))
            out.append(byte: UInt8(ascii: "/")); out.append(UInt64(i.totalRetrans))
        }
        if let window = i.sendWindow, window == 0, i.state != .listen, i.state != .closed, i.bytesReceived + i.bytesAcked > 1 {
            token("snd_wnd:0", &out)
        }
    }

    /// Microseconds as milliseconds with two decimals, truncated: `0.04`.
    static func appendMilliseconds(_ micros: UInt32, into out: inout TraceBytes) {
        out.append(UInt64(micros / 1000))
        out.append(byte: UInt8(ascii: "."))
        out.append(UInt64((micros % 1000) / 10), minimumDigits: 2)
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

    /// What `body` writes, between SGR color codes when coloring.
    private func paint(_ code: String, _ out: inout TraceBytes, _ body: (inout TraceBytes) -> Void) {
        paintStart(code, &out)
        body(&out)
        paintEnd(&out)
    }

    private func paintStart(_ code: String, _ out: inout TraceBytes) {
        if color { out.append("\u{1b}["); out.append(code); out.append(byte: UInt8(ascii: "m")) }
    }

    private func paintEnd(_ out: inout TraceBytes) {
        if color { out.append("\u{1b}[0m") }
    }

    /// `0.000412` seconds with microsecond resolution.
    public static func seconds(_ ns: UInt64) -> String {
        var out = TraceBytes()
        appendSeconds(ns, into: &out)
        return out.string
    }

    static func appendSeconds(_ ns: UInt64, into out: inout TraceBytes) {
        let micros = ns / 1000
        out.append(micros / 1_000_000)
        out.append(byte: UInt8(ascii: "."))
        out.append(micros % 1_000_000, minimumDigits: 6)
    }

    /// A short human duration: `17 µs`, `41 ms`, `1.2 s`, `59 s`, rounded to the nearest shown
    /// unit (61.98 s is `62 s`, not `61 s`). The unit is chosen after rounding, so 999.7 ms is `1.0 s`.
    public static func duration(_ ns: UInt64) -> String {
        var out = TraceBytes()
        appendDuration(ns, into: &out)
        return out.string
    }

    static func appendDuration(_ ns: UInt64, into out: inout TraceBytes) {
        if ns < 999_500 {
            out.append((ns + 500) / 1000); out.append(" µs")
        } else if ns < 999_500_000 {
            out.append((ns + 500_000) / 1_000_000); out.append(" ms")
        } else if ns < 9_950_000_000 {
            let tenths = (ns + 50_000_000) / 100_000_000
            out.append(tenths / 10); out.append(byte: UInt8(ascii: ".")); out.append(tenths % 10); out.append(" s")
        } else {
            out.append(ns / 1_000_000_000 + (ns % 1_000_000_000 >= 500_000_000 ? 1 : 0)); out.append(" s")
        }
    }

    package static func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let count = text.count
        guard count < width else { return text }
        let fill = String(repeating: " ", count: width - count)
        return left ? fill + text : text + fill
    }
}
