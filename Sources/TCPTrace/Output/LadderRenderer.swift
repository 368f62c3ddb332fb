import SocketKit

/// Both sides of a connection in one time-ordered table: client on the left, server on the
/// right, like the sequence diagrams in TCP textbooks. Used by `--demo` and `--merge`.
public struct LadderRenderer: Sendable {
    public var color: Bool
    static let cellWidth = 34

    public init(color: Bool) { self.color = color }

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

    public static let legend = "● tcp_info (read from the fd)   ◆ sock_diag (kernel socket table)   ▲ tracepoint   ○ inferred (RFC 9293: must have happened, not seen)"
    public static let wireLegend = "──▶ ◀── a segment captured on the wire (AF_PACKET), seq/ack relative to each side's ISN; \"segment #N\" names the one that caused a state"

    /// A segment as an arrow across both columns, the classic diagram's label on it:
    /// `─── SYN+ACK seq=0 ack=1 win=65483 ───▶` (client to server) or `◀── … ───` back.
    static func arrow(_ segment: WireSegment) -> String {
        let width = 2 * cellWidth + 1
        let label = " " + segment.label() + " "
        let rightward = segment.sender != .server
        let body = max(0, width - label.count - 2)
        let left = body / 2, right = body - left
        let dash = { (n: Int) in String(repeating: "─", count: n) }
        return rightward ? dash(left + 1) + label + dash(right) + "▶" : "◀" + dash(left) + label + dash(right + 1)
    }

    public func render(_ events: [TraceEvent]) -> [String] {
        let sorted = events.enumerated().sorted {
            ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset)
        }.map(\.element)
        guard let base = sorted.first?.timestampNs else { return [] }
        var lines = [TextTraceRenderer.pad("time", 10, left: true) + "  "
            + TextTraceRenderer.pad("CLIENT", Self.cellWidth) + " " + TextTraceRenderer.pad("SERVER", Self.cellWidth) + " what happened"]
        for event in sorted {
            let time = TextTraceRenderer.pad(TextTraceRenderer.seconds(event.timestampNs - base), 10, left: true)
            if event.kind == .segment, let segment = event.wire {
                var why = "#\(segment.id)"
                if !segment.options.isEmpty { why += " <\(segment.options.summary)>" }
                lines.append(time + "  " + paint(Self.arrow(segment), "1") + " " + paint(why, "2"))
                continue
            }
            let cell: String
            switch event.kind {
            case .state:
                let transition = "\(event.from?.name ?? "—") → \(event.to?.name ?? "?")"
                cell = "\(Self.mark(event.source)) #\(event.conn) \(transition)" + (event.unexpected ? " !" : "")
            case .warning: cell = "⚠ #\(event.conn) warning"
            case .error: cell = "✗ #\(event.conn) \(event.errno.map { Errno.name($0) } ?? "error")"
            case .info: cell = "· #\(event.conn) note"
            case .verdict: cell = "= #\(event.conn) \(event.verdict?.outcome.rawValue ?? "verdict")"
            case .data, .syscall, .segment: cell = "  #\(event.conn) \(event.kind.rawValue)"
            }
            let padded = TextTraceRenderer.pad(cell, Self.cellWidth)
            let columns = event.side == .client
                ? padded + " " + String(repeating: " ", count: Self.cellWidth)
                : String(repeating: " ", count: Self.cellWidth) + " " + padded
            var why = event.cause
            if let id = event.segmentID, event.kind == .state { why = "segment #\(id): " + why }
            if let timer = event.timerMs { why += " (timer \(TextTraceRenderer.duration(UInt64(timer) * 1_000_000)) left)" }
            if event.kind == .state, let ns = event.inStateNs, let from = event.from {
                why += " [\(TextTraceRenderer.duration(ns)) in \(from.name)]"
            }
            lines.append(time + "  " + paint(columns, code(event)) + " " + paint(why, "2"))
        }
        return lines
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
