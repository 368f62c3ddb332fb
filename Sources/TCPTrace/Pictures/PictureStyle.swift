import SocketKit

/// Colours and marks shared by the ladder and the state diagram, so a state looks the same in
/// both pictures.
enum PictureStyle {
    static let clientColor = "#1d4ed8"
    static let serverColor = "#047857"
    static let unexpectedColor = "#dc2626"
    static let fontFamily = "DejaVu Sans, Verdana, Arial, sans-serif"

    /// One hue per phase of a connection: opening blue, open green, closing amber (our FIN
    /// first) or rose (peer's FIN first), rest grey/violet.
    static func fill(_ state: TCPState) -> String {
        switch state {
        case .closed: return "#d1d5db"
        case .listen: return "#c4b5fd"
        case .synSent, .synReceived: return "#93c5fd"
        case .established: return "#6ee7b7"
        case .finWait1, .finWait2, .closing, .timeWait: return "#fcd34d"
        case .closeWait, .lastAck: return "#fda4af"
        case .unknown: return "#f87171"
        }
    }

    static func sideColor(_ side: TraceSide) -> String { side == .client ? clientColor : serverColor }

    /// The text marks, as in the terminal ladder: ● tcp_info ◆ sock_diag ▲ tracepoint ○ inferred.
    static func mark(_ source: ObservationSource?) -> String {
        source == nil ? "○" : LadderRenderer.mark(source)
    }

    static let legendMarks = "● tcp_info (read from the fd)   ◆ sock_diag (kernel socket table)   ▲ tracepoint (kernel)   ○ inferred (RFC 9293: must have happened, not seen)"

    /// The `<style>` both pictures embed: classes only, no external resources.
    static func css() -> String {
        """
        text{font-family:\(fontFamily);font-size:12px;fill:#111827}
        .title{font-size:17px;font-weight:bold}.verdict-ok{fill:#047857;font-weight:bold}
        .verdict-bad{fill:#b91c1c;font-weight:bold}.muted{fill:#6b7280}.small{font-size:10.5px}
        .heading{font-size:14px;font-weight:bold}.inferred-text{fill:#4b5563;font-style:italic}
        .lifeline{stroke:#9ca3af;stroke-width:1}.band{stroke-width:1.4}
        .band.inferred{stroke-dasharray:4 3;fill-opacity:.25}.band.unexpected{stroke:\(unexpectedColor);stroke-width:2.5}
        .arrow{stroke-width:1.6;fill:none}.arrow.lost{stroke-dasharray:6 3}
        .break{fill:#f3f4f6;stroke:#9ca3af;stroke-dasharray:2 3}
        .halo{paint-order:stroke;stroke:#ffffff;stroke-width:3px;stroke-linejoin:round}
        """
    }
}
