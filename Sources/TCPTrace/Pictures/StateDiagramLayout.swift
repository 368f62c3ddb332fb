import SocketKit

/// Where each state sits on the state diagram: RFC 9293 §3.3.2 Figure 5's arrangement
/// (opening at the top, our FIN on the left, the peer's on the right, TIME_WAIT at the
/// bottom). Only positions and edge words live here; which edges exist comes from
/// `TCPStateMachine.allowed`.
enum StateDiagramLayout {
    static let width = 900.0
    static let nodeWidth = 128.0
    static let nodeHeight = 40.0

    /// Centre of each node. CLOSED appears twice, as in the RFC: where a connection starts (top)
    /// and where a synchronized one ends (bottom right).
    static let positions: [TCPState: [DiagramPoint]] = [
        .closed: [DiagramPoint(450, 110), DiagramPoint(760, 830)],
        .listen: [DiagramPoint(450, 220)],
        .synReceived: [DiagramPoint(150, 350)],
        .synSent: [DiagramPoint(760, 350)],
        .established: [DiagramPoint(450, 470)],
        .finWait1: [DiagramPoint(150, 590)],
        .closeWait: [DiagramPoint(760, 590)],
        .finWait2: [DiagramPoint(150, 710)],
        .closing: [DiagramPoint(450, 710)],
        .lastAck: [DiagramPoint(760, 710)],
        .timeWait: [DiagramPoint(450, 830)],
    ]

    /// Which copy of a node an edge uses: connections that never synchronized (LISTEN,
    /// SYN_SENT, SYN_RECEIVED) return to the top CLOSED, as the RFC draws them; every other
    /// state ends in the bottom one.
    static func position(of state: TCPState, from other: TCPState? = nil) -> DiagramPoint? {
        guard let copies = positions[state], let first = copies.first else { return nil }
        guard state == .closed, let other, copies.count > 1 else { return first }
        switch other {
        case .listen, .synSent, .synReceived, .closed: return first
        default: return copies[1]
        }
    }

    /// RFC 9293's event / action for each edge, and the Linux spellings of the extra ones.
    /// An edge without words is still drawn.
    static let edgeWords: [Edge: String] = [
        Edge(.closed, .listen): "passive OPEN",
        Edge(.closed, .synSent): "active OPEN / snd SYN",
        Edge(.listen, .closed): "CLOSE",
        Edge(.listen, .synReceived): "rcv SYN / snd SYN,ACK",
        Edge(.listen, .synSent): "SEND / snd SYN",
        Edge(.synSent, .synReceived): "rcv SYN / snd ACK",
        Edge(.synSent, .established): "rcv SYN,ACK / snd ACK",
        Edge(.synSent, .closed): "CLOSE, RST or timeout",
        Edge(.synReceived, .established): "rcv ACK of SYN",
        Edge(.synReceived, .finWait1): "CLOSE / snd FIN",
        Edge(.synReceived, .listen): "rcv RST",
        Edge(.synReceived, .closed): "RST",
        Edge(.established, .finWait1): "CLOSE / snd FIN",
        Edge(.established, .closeWait): "rcv FIN / snd ACK",
        Edge(.established, .closed): "RST",
        Edge(.finWait1, .finWait2): "rcv ACK of FIN",
        Edge(.finWait1, .closing): "rcv FIN / snd ACK",
        Edge(.finWait1, .timeWait): "rcv FIN+ACK",
        Edge(.finWait1, .closed): "RST",
        Edge(.finWait2, .timeWait): "rcv FIN / snd ACK",
        Edge(.finWait2, .closed): "Linux: TIME_WAIT table full",
        Edge(.closing, .timeWait): "rcv ACK of FIN",
        Edge(.closing, .closed): "Linux: TIME_WAIT table full",
        Edge(.closeWait, .lastAck): "CLOSE / snd FIN",
        Edge(.closeWait, .closed): "RST",
        Edge(.lastAck, .closed): "rcv ACK of FIN",
        Edge(.timeWait, .closed): "2 MSL timeout",
    ]

    /// How far an edge bows from the straight line, as a fraction of its length (positive: to
    /// the left of its direction). Opposite edges between the same pair separate by default;
    /// these few would otherwise cross a node.
    static let bends: [Edge: Double] = [
        Edge(.established, .closed): -0.12,
        Edge(.closeWait, .closed): -0.35,
        Edge(.synReceived, .closed): 0.12,
        Edge(.finWait1, .timeWait): 0.1,
        Edge(.finWait1, .closed): 0.16,
        Edge(.finWait2, .closed): -0.32,
        Edge(.synSent, .synReceived): 0.08,
    ]
}

/// A directed edge of the state diagram.
struct Edge: Hashable {
    var from: TCPState
    var to: TCPState
    init(_ from: TCPState, _ to: TCPState) {
        self.from = from
        self.to = to
    }
}

struct DiagramPoint {
    var x: Double
    var y: Double
    init(_ x: Double, _ y: Double) {
        self.x = x
        self.y = y
    }
}
