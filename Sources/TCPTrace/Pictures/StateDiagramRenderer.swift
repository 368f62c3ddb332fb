import SocketKit

/// RFC 9293's state diagram drawn from `TCPStateMachine.allowed`, with one run's transitions
/// numbered in time order on top: observed ones solid, inferred ones dashed, in the side's
/// colour; edges the run did not take are dimmed. Self-contained SVG like the ladder.
public struct StateDiagramRenderer {
    /// One transition of the run, numbered from 1.
    struct Step {
        var number: Int
        var event: TraceEvent
        var from: TCPState
        var to: TCPState
        var inferred: Bool { event.source == .inferred || event.source == nil }
    }

    static let diagramBottom = 905.0

    public init() {}

    public func render(title: String, events: [TraceEvent]) -> String {
        let steps = Self.steps(events)
        let edges = Self.edges()
        let taken = Set(steps.map { Edge($0.from, $0.to) })
        let known = Set(edges)
        let unexpected = taken.filter { !known.contains($0) }
        let placement = StateDiagramPlacement(edges: edges + unexpected.sorted { ($0.from.name, $0.to.name) < ($1.from.name, $1.to.name) },
                                              unexpected: unexpected, steps: steps, width: StateDiagramLayout.width)
        let titleLines = PictureText.lines(title, maxWidth: StateDiagramLayout.width - 40, size: 17, bold: true)
        let shift = Double(max(titleLines.count - 1, 0)) * 22
        let listTop = Self.diagramBottom + 30
        let rows = (steps.count + 1) / 2
        let height = listTop + Double(max(rows, 1)) * 18 + 118 + shift
        let width = StateDiagramLayout.width
        var svg = SVGDocument()
        svg.raw("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\">\n")
        svg.element("title", [], text: title)
        svg.raw("<style>" + PictureStyle.css() + " .edge-word{font-size:10px;fill:#9ca3af}.taken .edge-word{fill:#111827}</style>\n")
        svg.raw("<defs>" + Self.marker("dim", "#d1d5db") + Self.marker("client", PictureStyle.clientColor)
            + Self.marker("server", PictureStyle.serverColor) + Self.marker("both", "#111827")
            + Self.marker("bad", PictureStyle.unexpectedColor) + "</defs>\n")
        svg.element("rect", [("x", "0"), ("y", "0"), ("width", "100%"), ("height", "100%"), ("fill", "#ffffff")])
        for (index, line) in titleLines.enumerated() {
            svg.element("text", [("class", "title"), ("x", "20"), ("y", n(30 + 22 * Double(index)))], text: line)
        }
        svg.open("g", [("class", "body"), ("transform", "translate(0," + n(shift) + ")")])
        svg.element("text", [("class", "muted"), ("x", "20"), ("y", "52")],
                    text: "RFC 9293 state diagram, edges from TCPStateMachine.allowed; this run's transitions numbered in time order.")
        // Dimmed edges first, so the run's path is drawn on top of them.
        for edge in edges where !taken.contains(edge) { drawEdge(edge, steps: [], placement: placement, into: &svg) }
        for edge in edges where taken.contains(edge) {
            drawEdge(edge, steps: steps.filter { Edge($0.from, $0.to) == edge }, placement: placement, into: &svg)
        }
        for edge in unexpected {
            drawEdge(edge, steps: steps.filter { Edge($0.from, $0.to) == edge }, unexpected: true, placement: placement, into: &svg)
        }
        drawNodes(steps: steps, into: &svg)
        drawList(steps, top: listTop, into: &svg)
        let legendTop = listTop + Double(max(rows, 1)) * 18 + 24
        for (index, line) in PictureText.lines(PictureStyle.legendMarks, maxWidth: StateDiagramLayout.width - 40, size: 12).enumerated() {
            svg.element("text", [("x", "20"), ("y", n(legendTop + 18 * Double(index)))], text: line)
        }
        svg.element("text", [("class", "muted"), ("x", "20"), ("y", n(legendTop + 40))],
                    text: "Blue: client, green: server, black: both sides. Solid: observed, dashed: inferred.")
        svg.element("text", [("class", "muted"), ("x", "20"), ("y", n(legendTop + 58))],
                    text: "Grey: allowed by RFC 9293 but not taken in this run. Red: observed although RFC 9293 does not allow it.")
        svg.close("g")
        svg.raw("</svg>\n")
        return svg.body
    }

    private func n(_ value: Double) -> String { SVGDocument.number(value) }

    /// Every edge `TCPStateMachine.allowed` has, in the order of `TCPState.all`.
    static func edges() -> [Edge] {
        TCPState.all.flatMap { from in
            TCPState.all.filter { TCPStateMachine.allowed[from]?.contains($0) == true }.map { Edge(from, $0) }
        }
    }

    /// The run's state transitions in time order (both sides, every connection).
    static func steps(_ events: [TraceEvent]) -> [Step] {
        let sorted = events.enumerated().sorted {
            ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset)
        }.map(\.element)
        var steps: [Step] = []
        for event in sorted where event.kind == .state {
            guard let from = event.from, let to = event.to, from != to else { continue }
            steps.append(Step(number: steps.count + 1, event: event, from: from, to: to))
        }
        return steps
    }

    static func marker(_ id: String, _ color: String) -> String {
        "<marker id=\"arrow-\(id)\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"\(color)\"/></marker>"
    }

    /// The curve of an edge: start and end on the node boxes, control point bowed to the left
    /// of the direction of travel (`normal`), so the two directions of a pair never overlap.
    static func curve(_ edge: Edge) -> Curve? {
        guard let a = StateDiagramLayout.position(of: edge.from, from: edge.to),
              let b = StateDiagramLayout.position(of: edge.to, from: edge.from) else { return nil }
        let dx = b.x - a.x, dy = b.y - a.y
        let length = max((dx * dx + dy * dy).squareRoot(), 1)
        let normal = (dy / length, -dx / length)
        let reverseExists = TCPStateMachine.allowed[edge.to]?.contains(edge.from) == true
        let offset = StateDiagramLayout.bends[edge].map { $0 * length } ?? (reverseExists ? max(0.1 * length, 26) : 0)
        let control = ((a.x + b.x) / 2 + normal.0 * offset, (a.y + b.y) / 2 + normal.1 * offset)
        let bowSide = offset >= 0 ? normal : (-normal.0, -normal.1)
        return Curve(start: boxExit(a, toward: control), control: control, end: boxExit(b, toward: control), outward: bowSide)
    }

    struct Curve {
        var start: (Double, Double)
        var control: (Double, Double)
        var end: (Double, Double)
        /// Unit vector towards the outside of the bow: where the edge's words go.
        var outward: (Double, Double)
    }

    /// Where the ray from a node's centre towards `point` leaves its box (plus a small gap).
    static func boxExit(_ center: DiagramPoint, toward point: (Double, Double)) -> (Double, Double) {
        let dx = point.0 - center.x, dy = point.1 - center.y
        let halfW = StateDiagramLayout.nodeWidth / 2 + 3, halfH = StateDiagramLayout.nodeHeight / 2 + 3
        let scale = min(abs(dx) > 0 ? halfW / abs(dx) : .infinity, abs(dy) > 0 ? halfH / abs(dy) : .infinity)
        guard scale.isFinite else { return (center.x, center.y) }
        return (center.x + dx * scale, center.y + dy * scale)
    }

    static func point(on c: Curve, at t: Double) -> (Double, Double) {
        let u = 1 - t
        return (u * u * c.start.0 + 2 * u * t * c.control.0 + t * t * c.end.0,
                u * u * c.start.1 + 2 * u * t * c.control.1 + t * t * c.end.1)
    }

    private func drawEdge(_ edge: Edge, steps: [Step], unexpected: Bool = false, placement: StateDiagramPlacement,
                          into svg: inout SVGDocument) {
        guard let c = Self.curve(edge) else { return }
        let sides = Set(steps.map(\.event.side))
        let key = unexpected ? "bad" : steps.isEmpty ? "dim" : sides.count > 1 ? "both" : (sides.first == .client ? "client" : "server")
        let color = ["dim": "#d1d5db", "client": PictureStyle.clientColor, "server": PictureStyle.serverColor,
                     "both": "#111827", "bad": PictureStyle.unexpectedColor][key] ?? "#111827"
        let allInferred = !steps.isEmpty && steps.allSatisfy(\.inferred)
        svg.open("g", [("class", "edge" + (steps.isEmpty ? "" : " taken") + (unexpected ? " unexpected" : "")),
                       ("data-from", edge.from.name), ("data-to", edge.to.name)])
        let d = "M\(n(c.start.0)),\(n(c.start.1)) Q\(n(c.control.0)),\(n(c.control.1)) \(n(c.end.0)),\(n(c.end.1))"
        var attributes = [("d", d), ("fill", "none"), ("stroke", color), ("stroke-width", steps.isEmpty ? "1.2" : "2.6"),
                          ("marker-end", "url(#arrow-\(key))")]
        if allInferred || unexpected { attributes.append(("stroke-dasharray", "6 4")) }
        svg.element("path", attributes, tooltip: "\(edge.from.name) → \(edge.to.name)")
        let words = unexpected ? "not allowed by RFC 9293" : StateDiagramLayout.edgeWords[edge]
        if let words, let place = placement.words[edge] {
            svg.element("text", [("class", "edge-word halo"), ("x", n(place.x)), ("y", n(place.y)), ("text-anchor", place.anchor)],
                        text: words)
        }
        for step in steps {
            let p = placement.badges[step.number] ?? Self.point(on: c, at: 0.5)
            let stepColor = PictureStyle.sideColor(step.event.side)
            svg.open("g", [("class", "step" + (step.inferred ? " inferred" : "")), ("data-step", String(step.number))])
            var circle = [("cx", n(p.0)), ("cy", n(p.1)), ("r", "9"), ("fill", step.inferred ? "#ffffff" : stepColor),
                          ("stroke", stepColor), ("stroke-width", "1.5")]
            if step.inferred { circle.append(("stroke-dasharray", "3 2")) }
            svg.element("circle", circle, tooltip: Self.describe(step))
            svg.element("text", [("x", n(p.0)), ("y", n(p.1 + 4)), ("text-anchor", "middle"), ("font-size", "10.5"),
                                 ("font-weight", "bold"), ("fill", step.inferred ? stepColor : "#ffffff")], text: String(step.number))
            svg.close("g")
        }
        svg.close("g")
    }

    private func drawNodes(steps: [Step], into svg: inout SVGDocument) {
        for state in TCPState.all {
            let touching = steps.filter { $0.to == state || $0.from == state }
            let observed = steps.contains { ($0.to == state && !$0.inferred) || ($0.from == state && !$0.inferred) }
            for (index, p) in (StateDiagramLayout.positions[state] ?? []).enumerated() {
                let visited = !touching.isEmpty
                svg.open("g", [("class", "node" + (visited ? " visited" : "")), ("data-state", state.name), ("data-copy", String(index))])
                var rect = [("x", n(p.x - StateDiagramLayout.nodeWidth / 2)), ("y", n(p.y - StateDiagramLayout.nodeHeight / 2)),
                            ("width", n(StateDiagramLayout.nodeWidth)), ("height", n(StateDiagramLayout.nodeHeight)), ("rx", "8"),
                            ("fill", visited ? PictureStyle.fill(state) : "#f9fafb"), ("stroke", visited ? "#111827" : "#d1d5db"),
                            ("stroke-width", visited ? "1.6" : "1")]
                if visited && !observed { rect.append(("stroke-dasharray", "5 3")) }
                svg.element("rect", rect)
                svg.element("text", [("x", n(p.x)), ("y", n(p.y + 5)), ("text-anchor", "middle"), ("font-weight", "bold"),
                                     ("fill", visited ? "#111827" : "#9ca3af")], text: state.name)
                svg.close("g")
            }
        }
    }

    static func describe(_ step: Step) -> String {
        let how = step.inferred ? "○ inferred" : "\(PictureStyle.mark(step.event.source)) \(step.event.source?.rawValue ?? "")"
        return "\(step.number). \(step.event.side.rawValue) #\(step.event.conn) \(step.from.name) → \(step.to.name)  \(how)"
            + (step.event.unexpected ? "  NOT ALLOWED BY RFC 9293" : "")
    }

    private func drawList(_ steps: [Step], top: Double, into svg: inout SVGDocument) {
        guard !steps.isEmpty else {
            svg.element("text", [("class", "muted"), ("x", "20"), ("y", n(top))], text: "No state transitions in this trace.")
            return
        }
        let rows = (steps.count + 1) / 2
        for (index, step) in steps.enumerated() {
            let x = index < rows ? 20.0 : StateDiagramLayout.width / 2 + 10
            let y = top + Double(index % rows) * 18
            svg.element("text", [("class", "transition" + (step.inferred ? " inferred-text" : "")), ("x", n(x)), ("y", n(y)),
                                 ("fill", PictureStyle.sideColor(step.event.side))], text: Self.describe(step), tooltip: step.event.cause)
        }
    }
}
