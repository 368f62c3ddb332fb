import SocketKit

/// Both sides of a connection in one time-ordered table: client on the left, server on the
/// right, like the sequence diagrams in TCP textbooks. Used by `--demo` and `--merge`.
public struct LadderRenderer: Sendable {
    public var color: Bool
    /// Terminal columns; nil (pipes, files) keeps one full line per event.
    public var width: Int?
    public static let cellWidth = 34

    public init(color: Bool, width: Int? = nil) {
        self.color = color
        self.width = width.map { max($0, 60) }
    }

    /// Marks in a cell: how the state was obtained.
    static func mark(_ source: ObservationSource?) -> String {
        switch source {
        case .tcpInfo?: return "●"
        case .sockDiag?: return "◆"
        case .tracepoint?: return "▲"
        case .inferred?: return "○"
        case nil: return " "
        }
    }

    /// The legend, one line per mark when the terminal is narrow.
    public static func legend(width: Int?) -> String {
        guard let width, width < legend.count else { return legend }
        return legendParts.joined(separator: "\n")
    }

    static let legendParts = ["● tcp_info (read from the fd)", "◆ sock_diag (kernel socket table)", "▲ tracepoint", "○ inferred (RFC 9293: must have happened, not seen)"]
    public static let legend = legendParts.joined(separator: "   ")
    public static let wireLegend = "──▶ ◀── a segment captured on the wire (AF_PACKET), seq/ack relative to each side's ISN; \"segment #N\" names the one that caused a state"

    /// A segment as an arrow across both columns, the classic diagram's label on it:
    /// `─── SYN+ACK seq=0 ack=1 win=65483 ───▶` (client to server) or `◀── … ───` back.
    static func arrow(_ segment: WireSegment, cellWidth: Int) -> String {
        let width = 2 * cellWidth + 1
        let label = " " + segment.label() + " "
        let rightward = segment.sender != .server
        let body = max(0, width - label.count - 2)
        let left = body / 2, right = body - left
        let dash = { (n: Int) in String(repeating: "─", count: n) }
        switch segment.fault {
        case .dropped?:
            // Lost: the arrow stops midway, ✕ where it died, nothing reaches the receiver.
            let stub = max(1, right / 2)
            let gap = String(repeating: " ", count: right - stub + 1)
            return rightward ? dash(left + 1) + label + dash(stub) + "✕" + gap.dropLast()
                : String(gap.dropLast()) + "✕" + dash(stub) + label + dash(left + 1)
        case .injected?:
            // Injected: comes from outside the sender's column (dotted start).
            let dots = { (n: Int) in String(repeating: "┄", count: n) }
            return rightward ? dots(left + 1) + label + dash(right) + "▶" : "◀" + dash(left) + label + dots(right + 1)
        default:
            return rightward ? dash(left + 1) + label + dash(right) + "▶" : "◀" + dash(left) + label + dash(right + 1)
        }
    }

    /// Column widths: full columns unless a terminal is too narrow for them and a useful cause
    /// column; then each cell only as wide as `cellWidth`, the cause on indented lines below.
    struct Layout {
        var fullFits: Bool, cellWidth: Int, timeWidth: Int, gap: String
        /// Where the descriptions start, and whether they have a column of their own: when the
        /// terminal leaves 30 columns beside both cells (120 and more); below that they follow
        /// the cell and wrap under the time.
        var columnStart: Int { timeWidth + gap.count + 2 * cellWidth + 2 }
        var aligned = true
    }

    func layout(cellWidth narrow: Int) -> Layout {
        let fullFits = width.map { $0 - (12 + 2 * Self.cellWidth + 2) >= 60 } ?? true
        var l = Layout(fullFits: fullFits, cellWidth: fullFits ? Self.cellWidth : narrow, timeWidth: fullFits ? 10 : 9,
                       gap: fullFits ? "  " : " ")
        l.aligned = fullFits || (width.map { $0 - l.columnStart >= 30 } ?? true)
        return l
    }

    public func render(_ events: [TraceEvent]) -> [String] {
        let sorted = events.enumerated().sorted {
            ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset)
        }.map(\.element)
        guard let base = sorted.first?.timestampNs else { return [] }
        let narrow = max(sorted.map(cell).map(\.count).max() ?? 0, 20)
        return [header(cellWidth: narrow)] + rows(sorted, base: base, cellWidth: narrow)
    }

    /// The column titles. `cellWidth`: the narrow layout's cell (the live lab: the widest cell).
    public func header(cellWidth narrow: Int = LadderRenderer.cellWidth) -> String {
        let l = layout(cellWidth: narrow)
        return TextTraceRenderer.pad("time", l.timeWidth, left: true) + l.gap + TextTraceRenderer.pad("CLIENT", l.cellWidth) + " "
            + (l.aligned ? TextTraceRenderer.pad("SERVER", l.cellWidth) + " what happened" : "SERVER")
    }

    /// The rows of `sorted` (already in time order), times relative to `base`.
    public func rows(_ sorted: [TraceEvent], base: UInt64, cellWidth narrow: Int = LadderRenderer.cellWidth) -> [String] {
        let l = layout(cellWidth: narrow)
        let (cellWidth, timeWidth, gap) = (l.cellWidth, l.timeWidth, l.gap)
        let (columnStart, aligned) = (l.columnStart, l.aligned)
        let cells = sorted.map(cell)
        var lines: [String] = []
        for (event, cellText) in zip(sorted, cells) {
            let time = TextTraceRenderer.pad(TextTraceRenderer.seconds(event.timestampNs &- base), timeWidth, left: true)
            if event.kind == .segment, let segment = event.wire {
                let arrow = Self.arrow(segment, cellWidth: cellWidth)
                var why = "#\(segment.id)"
                if !segment.options.isEmpty { why += " <\(segment.optionsSummary())>" }
                if let fault = segment.fault { why += " " + fault.note }
                guard let width else {
                    lines.append(time + "  " + paint(arrow, "1") + " " + paint(why, "2"))
                    continue
                }
                let indent = aligned ? columnStart : timeWidth + 1
                lines.append(TextWrap.fit(time + gap + paint(arrow, "1"), firstColumns: timeWidth + gap.count + arrow.count,
                                          words: TextWrap.words(why, "2"), width: width, indent: indent, color: color, minimumRoom: 24))
                continue
            }
            let padded = TextTraceRenderer.pad(cellText, cellWidth)
            let columns = event.side == .client
                ? padded + " " + String(repeating: " ", count: cellWidth)
                : String(repeating: " ", count: cellWidth) + " " + padded
            var why = event.cause
            if let id = event.segmentID, event.kind == .state { why = "segment #\(id): " + why }
            if let timer = event.timerMs { why += " (timer \(TextTraceRenderer.duration(UInt64(timer) * 1_000_000)) left)" }
            if event.kind == .state, let ns = event.inStateNs, let from = event.from {
                why += " [\(TextTraceRenderer.duration(ns)) in \(from.name)]"
            }
            guard let width else {
                lines.append(time + "  " + paint(columns, code(event)) + " " + paint(why, "2"))
                continue
            }
            // Trailing blanks of a client-only row are not printed on a terminal.
            var head = time + gap + paint(columns, code(event))
            var headColumns = timeWidth + gap.count + columns.count
            if !aligned {
                let trimmed = event.side == .client ? padded : String(repeating: " ", count: cellWidth) + " " + cellText
                head = time + gap + paint(trimmed, code(event))
                headColumns = timeWidth + gap.count + trimmed.count
            }
            let indent = aligned ? columnStart : timeWidth + 1
            lines.append(TextWrap.fit(head, firstColumns: headColumns, words: TextWrap.words(why, "2"), width: width,
                                      indent: indent, color: color, minimumRoom: 24))
        }
        return lines
    }

    /// `● #1 SYN_SENT → ESTABLISHED`, `✗ #1 ECONNREFUSED`, `· #1 note`.
    private func cell(_ event: TraceEvent) -> String {
        switch event.kind {
        case .state:
            let transition = "\(event.from?.name ?? "—") → \(event.to?.name ?? "?")"
            return "\(Self.mark(event.source)) #\(event.conn) \(transition)" + (event.unexpected ? " !" : "")
        case .warning: return "⚠ #\(event.conn) warning"
        case .error: return "✗ #\(event.conn) \(event.errno.map { Errno.name($0) } ?? "error")"
        case .info: return "· #\(event.conn) note"
        case .verdict: return "= #\(event.conn) \(event.verdict?.outcome.rawValue ?? "verdict")"
        case .data, .syscall: return "  #\(event.conn) \(event.kind.rawValue)"
        case .segment: return ""       // drawn as an arrow across both columns
        }
    }

    private func code(_ event: TraceEvent) -> String {
        if event.kind == .warning { return "33" }
        if event.kind == .error || event.unexpected { return "31" }
        if event.source == .inferred { return "2" }
        return event.side == .client ? "36" : "32"
    }

    private func paint(_ text: String, _ code: String) -> String {
        color ? "\u{1b}[\(code)m\(text)\u{1b}[0m" : text
    }

    /// One line per side: the sequence of states reached, inferred ones in parentheses.
    public static func sequences(_ events: [TraceEvent]) -> [String] {
        var lines: [String] = []
        for side in [TraceSide.client, .server] {
            let states = events.filter { $0.side == side && $0.kind == .state }
                .sorted { $0.timestampNs < $1.timestampNs }
            let byConn = Dictionary(grouping: states, by: \.conn).sorted { $0.key < $1.key }
            for (conn, list) in byConn {
                let names = list.map { $0.source == .inferred ? "(\($0.to!.name))" : $0.to!.name }
                lines.append("\(side.rawValue) #\(conn): " + names.joined(separator: " → "))
            }
        }
        return lines
    }
}
