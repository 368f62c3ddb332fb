import SocketKit

/// Draws a `LadderPicture` as one self-contained SVG: no scripts, no external fonts, images or
/// links, every text escaped. Each drawn state carries `class="state"` and each segment
/// `class="segment"`, and both carry `data-event`/`data-segment`, for the HTML page and tests.
public struct LadderSVGRenderer {
    static let marginLeft = 100.0
    static let labelWidth = 215.0
    static let centerGap = 360.0
    static let axisTop = 150.0

    public init() {}

    /// What occupies a row of the time axis.
    enum RowItem: Hashable {
        case event(Int), sent(Int), received(Int)
    }

    public func render(_ picture: LadderPicture) -> String {
        let events = picture.sortedEvents
        var lanes = LadderLane.lanes(for: events)
        // Two lifelines always: a side with no traced socket still gets its (empty) lifeline.
        if !lanes.contains(where: { $0.side == .client }) {
            lanes.insert(LadderLane(side: .client, conn: -1, isListener: false, address: nil), at: 0)
        }
        if !lanes.contains(where: { $0.side == .server }) {
            lanes.append(LadderLane(side: .server, conn: -1, isListener: false, address: nil))
        }
        let xs = Self.laneXs(lanes)
        let bands = LadderBand.bands(events: events, lanes: lanes)
        let items = Self.rowItems(events: events, segments: picture.segments)
        // Titles wrap to the picture's width; the rest moves down by the extra lines.
        let axis = LadderTimeAxis(instants: items.map(\.ns), top: Self.axisTop)
        var rowY: [RowItem: Double] = [:]
        for (index, item) in items.enumerated() { rowY[item.item] = axis.rows[index].y }
        let base = min(events.first?.timestampNs ?? 0, picture.segments.map(\.sentNs).min() ?? .max)
        let endNs = max(events.last?.timestampNs ?? 0, items.last?.ns ?? 0)
        let bottom = max(axis.y(at: endNs), axis.bottom) + 30
        let width = (xs.last ?? 0) + Self.labelWidth + 20
        let titleLines = PictureText.lines(picture.title, maxWidth: width - 40, size: 17, bold: true)
        let shift = Double(max(titleLines.count - 1, 0)) * 22
        let legendTop = bottom + 30
        let height = legendTop + 110 + shift

        var svg = SVGDocument()
        svg.raw("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(SVGDocument.number(width))\" height=\"\(SVGDocument.number(height))\" viewBox=\"0 0 \(SVGDocument.number(width)) \(SVGDocument.number(height))\" role=\"img\">\n")
        svg.element("title", [], text: picture.title)
        svg.raw("<style>" + PictureStyle.css() + "</style>\n")
        svg.raw("<defs><marker id=\"head\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"context-stroke\"/></marker></defs>\n")
        svg.element("rect", [("x", "0"), ("y", "0"), ("width", "100%"), ("height", "100%"), ("fill", "#ffffff")])
        drawTitle(picture, lines: titleLines, into: &svg)
        svg.open("g", [("class", "body"), ("transform", "translate(0," + n(shift) + ")")])
        drawHeadings(lanes, xs: xs, into: &svg)
        for brk in axis.breaks { drawBreak(brk, width: width, into: &svg) }
        for x in xs {
            svg.element("line", [("class", "lifeline"), ("x1", n(x)), ("y1", n(Self.axisTop - 12)), ("x2", n(x)), ("y2", n(bottom))])
        }
        drawTimes(items: items, axis: axis, base: base, into: &svg)
        for band in bands {
            let top = rowY[.event(band.event)] ?? axis.y(at: band.startNs)
            let end = band.endEvent.flatMap { rowY[.event($0)] } ?? bottom - 12
            drawBand(band, events: events, lane: lanes[band.lane], x: xs[band.lane], top: top, end: end,
                     breaks: band.isTerminal ? [] : axis.breaks.filter { $0.fromY > top && $0.toY < end }, into: &svg)
        }
        for (index, event) in events.enumerated() where event.kind != .state {
            guard let lane = lanes.firstIndex(where: { $0.side == event.side && $0.conn == event.conn }) else { continue }
            drawNote(event, index: index, lane: lanes[lane], x: xs[lane], y: rowY[.event(index)] ?? axis.y(at: event.timestampNs), into: &svg)
        }
        for (index, segment) in picture.segments.enumerated() {
            drawSegment(segment, index: index, lanes: lanes, xs: xs, labelX: Self.centerX(lanes, xs), sentY: rowY[.sent(index)] ?? 0,
                        receivedY: rowY[.received(index)] ?? (segment.receivedNs == nil ? nil : rowY[.sent(index)]), into: &svg)
        }
        drawLegend(top: legendTop, width: width, segmentsShown: !picture.segments.isEmpty, into: &svg)
        svg.close("g")
        svg.raw("</svg>\n")
        return svg.body
    }

    private func n(_ value: Double) -> String { SVGDocument.number(value) }

    static func laneXs(_ lanes: [LadderLane]) -> [Double] {
        var xs: [Double] = []
        var x = marginLeft
        for (index, lane) in lanes.enumerated() {
            if lane.side == .client {
                x += labelWidth
            } else {
                x += index > 0 && lanes[index - 1].side == .client ? centerGap : labelWidth
                if index == 0 { x = marginLeft + labelWidth + centerGap }
            }
            xs.append(x)
        }
        return xs
    }

    /// Rows: every transition, warning and error, and each segment's departure and arrival.
    /// Notes, data and syscalls sit between rows at their time.
    static func rowItems(events: [TraceEvent], segments: [LadderPicture.Segment]) -> [(ns: UInt64, item: RowItem)] {
        // At one instant: what caused a segment, then the segment, then the states it caused
        // (an inferred band never starts above the arrow that caused it).
        var items: [(ns: UInt64, phase: Int, order: Int, item: RowItem)] = []
        for (index, event) in events.enumerated() where event.kind == .state || event.kind == .error || event.kind == .warning {
            items.append((event.timestampNs, event.segmentID == nil ? 0 : 2, index, .event(index)))
        }
        for (index, segment) in segments.enumerated() {
            items.append((segment.sentNs, 1, events.count + 2 * index, .sent(index)))
            // One capture per segment (the receiver's): no travel time to draw, one row.
            if let received = segment.receivedNs, received > segment.sentNs {
                items.append((received, 1, events.count + 2 * index + 1, .received(index)))
            }
        }
        return items.sorted { ($0.ns, $0.phase, $0.order) < ($1.ns, $1.phase, $1.order) }.map { ($0.ns, $0.item) }
    }

    private func drawTitle(_ picture: LadderPicture, lines: [String], into svg: inout SVGDocument) {
        for (index, line) in lines.enumerated() {
            svg.element("text", [("class", "title"), ("x", "20"), ("y", n(30 + 22 * Double(index)))], text: line)
        }
        let y = n(52 + 22 * Double(max(lines.count - 1, 0)))
        switch picture.verdict {
        case .matched(let text)?: svg.element("text", [("class", "verdict-ok"), ("x", "20"), ("y", y)], text: text)
        case .differs(let text)?: svg.element("text", [("class", "verdict-bad"), ("x", "20"), ("y", y)], text: text)
        case nil: break
        }
    }

    private func drawHeadings(_ lanes: [LadderLane], xs: [Double], into svg: inout SVGDocument) {
        for side in [TraceSide.client, .server] {
            let sideXs = zip(lanes, xs).filter { $0.0.side == side }.map(\.1)
            guard let first = sideXs.first, let last = sideXs.last else { continue }
            svg.element("text", [("class", "heading"), ("x", n((first + last) / 2)), ("y", "84"), ("text-anchor", "middle"),
                                 ("fill", PictureStyle.sideColor(side))], text: side == .client ? "CLIENT" : "SERVER")
        }
        for (lane, x) in zip(lanes, xs) {
            let heading = lane.conn < 0 ? "no socket traced" : lane.heading
            svg.element("text", [("x", n(x)), ("y", "106"), ("text-anchor", "middle"), ("font-weight", "bold")], text: heading)
            if let address = lane.address {
                svg.element("text", [("class", "small muted"), ("x", n(x)), ("y", "122"), ("text-anchor", "middle")], text: address)
            }
        }
        svg.element("text", [("class", "small muted"), ("x", n(Self.marginLeft - 10)), ("y", "122"), ("text-anchor", "end")], text: "time (s)")
    }

    private func drawBreak(_ brk: LadderTimeAxis.Break, width: Double, into svg: inout SVGDocument) {
        svg.open("g", [("class", "time-break")])
        svg.element("rect", [("class", "break"), ("x", "10"), ("y", n(brk.fromY)), ("width", n(width - 20)), ("height", n(brk.toY - brk.fromY))])
        svg.element("text", [("class", "small muted"), ("x", "16"), ("y", n((brk.fromY + brk.toY) / 2 + 4))],
                    text: "≈ " + TextTraceRenderer.duration(brk.ns) + " compressed")
        svg.close("g")
    }

    private func drawTimes(items: [(ns: UInt64, item: RowItem)], axis: LadderTimeAxis, base: UInt64, into svg: inout SVGDocument) {
        var last: UInt64?
        for (index, item) in items.enumerated() where item.ns != last {
            last = item.ns
            svg.element("text", [("class", "small muted"), ("x", n(Self.marginLeft - 10)), ("y", n(axis.rows[index].y + 4)),
                                 ("text-anchor", "end")], text: TextTraceRenderer.seconds(item.ns >= base ? item.ns - base : 0))
        }
    }

    private func drawBand(_ band: LadderBand, events: [TraceEvent], lane: LadderLane, x: Double, top: Double, end: Double,
                          breaks: [LadderTimeAxis.Break], into svg: inout SVGDocument) {
        let event = events[band.event]
        let height = band.isTerminal ? 6 : max(end - top, 8)
        var classes = "state band-group"
        if band.inferred { classes += " inferred" }
        var attributes = [("class", classes), ("data-event", String(band.event)), ("data-state", band.state.name),
                          ("data-side", lane.side.rawValue), ("data-conn", String(lane.conn))]
        // The segment that caused it, for tests and the page: the band starts at or below it.
        if let id = event.segmentID { attributes.append(("data-caused-by", String(id))) }
        svg.open("g", attributes)
        var tooltip = "\(lane.side.rawValue) #\(lane.conn): \(event.from?.name ?? "—") → \(band.state.name)\n"
        tooltip += "how: \(event.source?.rawValue ?? "inferred")\ncause: \(event.cause)"
        if let ms = event.timerMs { tooltip += "\ntimer \(TextTraceRenderer.duration(UInt64(ms) * 1_000_000)) left" }
        if event.unexpected { tooltip += "\nNOT ALLOWED BY RFC 9293" }
        svg.element("title", [], text: tooltip)
        var bandClass = "band" + (band.inferred ? " inferred" : "") + (band.unexpected ? " unexpected" : "")
        if band.endEvent == nil { bandClass += " open" }
        svg.element("rect", [("class", bandClass), ("x", n(x - 7)), ("y", n(top)), ("width", "14"), ("height", n(height)),
                             ("rx", "3"), ("fill", PictureStyle.fill(band.state)), ("stroke", PictureStyle.sideColor(lane.side))])
        let labelX = lane.side == .client ? x - 14 : x + 14
        let anchor = lane.side == .client ? "end" : "start"
        // A label wider than the room beside the lane goes on two lines (never into the next lane).
        let lines = PictureText.lines(band.label, maxWidth: Self.labelWidth - 30, size: 12)
        for (index, line) in lines.enumerated() {
            svg.element("text", [("class", band.inferred ? "label inferred-text" : "label"), ("x", n(labelX)),
                                 ("y", n(top + 4 + 15 * Double(index))), ("text-anchor", anchor)], text: line)
        }
        // Compressed time the band lives through: a cut across the band, and its real length
        // on the band itself, so 62 s never looks shorter than 0.2 s without saying so.
        for brk in breaks {
            let mid = (brk.fromY + brk.toY) / 2
            svg.element("path", [("class", "cut"), ("d", "M\(n(x - 10)),\(n(mid - 3)) l5,-4 l5,8 l5,-8 l5,8 l2,-2"),
                                 ("fill", "none"), ("stroke", "#ffffff"), ("stroke-width", "4")])
            svg.element("path", [("class", "cut"), ("d", "M\(n(x - 10)),\(n(mid - 3)) l5,-4 l5,8 l5,-8 l5,8 l2,-2"),
                                 ("fill", "none"), ("stroke", "#374151"), ("stroke-width", "1.2")])
            let length = band.durationNs.map { " " + TextTraceRenderer.duration($0) } ?? ""
            svg.element("text", [("class", "label cut-label"), ("x", n(labelX)), ("y", n(mid + 4)), ("text-anchor", anchor)],
                        text: "\(band.state.name)\(length)")
        }
        svg.close("g")
    }

    private func drawNote(_ event: TraceEvent, index: Int, lane: LadderLane, x: Double, y: Double, into svg: inout SVGDocument) {
        let kind = event.kind.rawValue
        svg.open("g", [("class", "note note-" + kind), ("data-event", String(index))])
        svg.element("title", [], text: "\(event.side.rawValue) #\(event.conn) \(kind): \(event.cause)")
        switch event.kind {
        case .error, .warning:
            let color = event.kind == .error ? PictureStyle.unexpectedColor : "#b45309"
            svg.element("circle", [("cx", n(x)), ("cy", n(y)), ("r", "5"), ("fill", color)])
            let word = event.kind == .error ? "✗ " + (event.errno.map { Errno.name($0) } ?? "error") : "⚠ warning"
            svg.element("text", [("x", n(lane.side == .client ? x - 14 : x + 14)), ("y", n(y + 4)), ("fill", color),
                                 ("text-anchor", lane.side == .client ? "end" : "start")], text: word)
        default:
            svg.element("circle", [("cx", n(x)), ("cy", n(y)), ("r", "2.5"), ("fill", "#6b7280")])
        }
        svg.close("g")
    }

    /// The middle of the gap between the two sides, where no lane's band or label is.
    static func centerX(_ lanes: [LadderLane], _ xs: [Double]) -> Double {
        let client = zip(lanes, xs).filter { $0.0.side == .client }.map(\.1).max() ?? marginLeft
        let server = zip(lanes, xs).filter { $0.0.side == .server }.map(\.1).min() ?? client + centerGap
        return (client + server) / 2
    }

    private func drawSegment(_ segment: LadderPicture.Segment, index: Int, lanes: [LadderLane], xs: [Double], labelX: Double,
                             sentY: Double, receivedY: Double?, into svg: inout SVGDocument) {
        func lane(_ side: TraceSide, _ conn: Int?) -> Int? {
            if let conn, let found = lanes.firstIndex(where: { $0.side == side && $0.conn == conn }) { return found }
            return lanes.firstIndex { $0.side == side && !$0.isListener } ?? lanes.firstIndex { $0.side == side }
        }
        let receiver: TraceSide = segment.sender == .client ? .server : .client
        guard let from = lane(segment.sender, segment.sender == .client ? segment.clientConn : segment.serverConn),
              let to = lane(receiver, receiver == .client ? segment.clientConn : segment.serverConn) else { return }
        let direction = xs[to] > xs[from] ? 1.0 : -1.0
        let x1 = xs[from] + 8 * direction
        var x2 = xs[to] - 9 * direction
        var y2 = receivedY ?? sentY
        // Lost: the arrow stops 70% of the way, ✗ where it died; flat enough that the label,
        // centred in the gap above it, stays clear of the ✗ and of both lanes' bands.
        if segment.receivedNs == nil { x2 = x1 + (x2 - x1) * 0.7; y2 = sentY + 20 }
        let color = PictureStyle.sideColor(segment.sender)
        svg.open("g", [("class", "segment" + (receivedY == nil ? " lost" : "")), ("data-segment", String(index)),
                       ("data-id", String(segment.id))])
        var tooltip = segment.label
        if let received = segment.receivedNs {
            tooltip += "\ntravel time: " + TextTraceRenderer.duration(received >= segment.sentNs ? received - segment.sentNs : 0)
        } else {
            tooltip += "\nnot seen arriving"
        }
        if let detail = segment.detail { tooltip += "\n" + detail }
        svg.element("title", [], text: tooltip)
        svg.element("line", [("class", "arrow" + (receivedY == nil ? " lost" : "")), ("x1", n(x1)), ("y1", n(sentY)), ("x2", n(x2)), ("y2", n(y2)),
                             ("stroke", color), ("marker-end", "url(#head)")])
        if receivedY == nil {
            // Beyond the arrow's end, whichever way it points.
            svg.element("text", [("x", n(x2 + 4 * direction)), ("y", n(y2 + 4)), ("text-anchor", direction > 0 ? "start" : "end"),
                                 ("fill", PictureStyle.unexpectedColor)], text: "✗")
        }
        // The label above its arrow, on a background, never struck through: its baseline sits
        // above the arrow's highest point under the label's span.
        let labelWidth = PictureText.width(segment.label, size: 12)
        let slope = abs(x2 - x1) > 1 ? (y2 - sentY) / (x2 - x1) : 0
        // Centred in the gap between the sides: an arrow from an outer lane crosses inner lanes,
        // and its label must not sit on their bands.
        let midX = labelX
        let midY = x2 == x1 ? sentY : sentY + (y2 - sentY) * (midX - x1) / (x2 - x1)
        let baseline = midY - abs(slope) * labelWidth / 2 - 7
        svg.element("rect", [("class", "label-bg"), ("x", n(midX - labelWidth / 2 - 3)), ("y", n(baseline - 12)),
                             ("width", n(labelWidth + 6)), ("height", "15"), ("rx", "3"), ("fill", "#ffffff"), ("fill-opacity", "0.85")])
        svg.element("text", [("class", "label"), ("x", n(midX)), ("y", n(baseline)),
                             ("text-anchor", "middle"), ("fill", color)], text: segment.label)
        svg.close("g")
    }

    private func drawLegend(top: Double, width: Double, segmentsShown: Bool, into svg: inout SVGDocument) {
        svg.open("g", [("class", "legend")])
        svg.element("line", [("x1", "10"), ("y1", n(top - 14)), ("x2", n(width - 10)), ("y2", n(top - 14)), ("stroke", "#e5e7eb")])
        svg.element("text", [("x", "20"), ("y", n(top + 4))], text: PictureStyle.legendMarks)
        svg.element("rect", [("class", "band"), ("x", "20"), ("y", n(top + 18)), ("width", "14"), ("height", "20"), ("rx", "3"),
                             ("fill", PictureStyle.fill(.established)), ("stroke", "#374151")])
        svg.element("text", [("x", "42"), ("y", n(top + 32))], text: "observed state (band length = time in the state)")
        svg.element("rect", [("class", "band inferred"), ("x", "340"), ("y", n(top + 18)), ("width", "14"), ("height", "20"), ("rx", "3"),
                             ("fill", PictureStyle.fill(.finWait1)), ("stroke", "#374151")])
        svg.element("text", [("x", "362"), ("y", n(top + 32))], text: "inferred state (duration unknown; ≤ = at most)")
        svg.element("text", [("x", "20"), ("y", n(top + 60))],
                    text: segmentsShown ? "→ segment on the wire at its capture time (sloped when both ends were captured); dashed with ✗: not seen arriving"
                        : "No segments captured in this run: only the states each side observed are shown.")
        svg.element("text", [("class", "muted"), ("x", "20"), ("y", n(top + 82))],
                    text: "Time runs down. One row per transition or segment; gaps grow with the log of their length; gaps over 0.5 s are compressed and labelled.")
        svg.close("g")
    }
}
