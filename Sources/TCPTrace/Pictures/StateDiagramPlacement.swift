/// Where the state diagram's badges (the run's numbered steps) and edge words go: a layout
/// pass over estimated boxes, so no badge sits on another badge, a word or a node, and no
/// word crosses an edge or another word. Each item tries positions along its own edge, nearest
/// the preferred one first; the first free one wins (the least crowded one when none is free).
struct StateDiagramPlacement {
    struct Word {
        var x: Double, y: Double, anchor: String
    }

    private(set) var badges: [Int: (Double, Double)] = [:]
    private(set) var words: [Edge: Word] = [:]
    private var taken: [PictureText.Box] = []
    private let nodes: [PictureText.Box]
    private let curves: [Edge: StateDiagramRenderer.Curve]
    private let samples: [Edge: [(Double, Double)]]
    /// Each edge's sampled extent: most candidates are far from most edges.
    private let extents: [Edge: PictureText.Box]

    static let badgeRadius = 9.0
    static let wordSize = 10.0

    /// - Parameter unexpected: edges RFC 9293 does not allow that the run took anyway: their
    ///   words say so.
    init(edges: [Edge], unexpected: Set<Edge> = [], steps: [StateDiagramRenderer.Step], width: Double) {
        var curves: [Edge: StateDiagramRenderer.Curve] = [:]
        for edge in edges { curves[edge] = StateDiagramRenderer.curve(edge) }
        self.curves = curves
        var samples: [Edge: [(Double, Double)]] = [:]
        for (edge, c) in curves {
            let chord = ((c.end.0 - c.start.0) * (c.end.0 - c.start.0) + (c.end.1 - c.start.1) * (c.end.1 - c.start.1)).squareRoot()
            let count = max(Int(chord / 2), 20)
            samples[edge] = (0...count).map { StateDiagramRenderer.point(on: c, at: Double($0) / Double(count)) }
        }
        self.samples = samples
        var extents: [Edge: PictureText.Box] = [:]
        for (edge, points) in samples {
            let xs = points.map(\.0), ys = points.map(\.1)
            let x = xs.min() ?? 0, y = ys.min() ?? 0
            extents[edge] = PictureText.Box(x: x, y: y, w: (xs.max() ?? 0) - x, h: (ys.max() ?? 0) - y).grown(2)
        }
        self.extents = extents
        nodes = StateDiagramLayout.positions.values.flatMap { $0 }.map {
            PictureText.Box(x: $0.x - StateDiagramLayout.nodeWidth / 2, y: $0.y - StateDiagramLayout.nodeHeight / 2,
                            w: StateDiagramLayout.nodeWidth, h: StateDiagramLayout.nodeHeight).grown(3)
        }
        // Badges first: they mark the run's path; words make room for them.
        let byEdge = Dictionary(grouping: steps) { Edge($0.from, $0.to) }
        for edge in byEdge.keys.sorted(by: { (byEdge[$0]?.first?.number ?? 0) < (byEdge[$1]?.first?.number ?? 0) }) {
            guard let c = curves[edge], let list = byEdge[edge] else { continue }
            for (k, step) in list.enumerated() {
                let preferred = min(max(0.5 + (Double(k) - Double(list.count - 1) / 2) * 0.16, 0.15), 0.85)
                let ts = stride(from: 0.12, through: 0.88, by: 0.02).sorted { abs($0 - preferred) < abs($1 - preferred) }
                let candidates = ts.map { StateDiagramRenderer.point(on: c, at: $0) }
                let best = choose(candidates.map { p in (p, badgeBox(p)) }, avoiding: edge)
                badges[step.number] = best.0
                taken.append(best.1)
            }
        }
        for edge in edges {
            guard let c = curves[edge],
                  let text = unexpected.contains(edge) ? "not allowed by RFC 9293" : StateDiagramLayout.edgeWords[edge] else { continue }
            var candidates: [(Word, PictureText.Box)] = []
            let ts = stride(from: 0.1, through: 0.9, by: 0.04).sorted { abs($0 - 0.5) < abs($1 - 0.5) }
            for t in ts {
                let p = StateDiagramRenderer.point(on: c, at: t)
                for d in [14.0, 22, 30, 40, 52, -14, -22, -30, -40] {
                    let o = d > 0 ? c.outward : (-c.outward.0, -c.outward.1)
                    let anchor = o.0 > 0.3 ? "start" : o.0 < -0.3 ? "end" : "middle"
                    let x = p.0 + o.0 * abs(d), y = p.1 + o.1 * abs(d) + 4
                    let box = PictureText.box(text, x: x, y: y, size: Self.wordSize, anchor: anchor)
                    guard box.x > 4, box.x + box.w < width - 4 else { continue }
                    candidates.append((Word(x: x, y: y, anchor: anchor), box))
                }
            }
            guard !candidates.isEmpty else { continue }
            let best = choose(candidates, avoiding: nil)
            words[edge] = best.0
            taken.append(best.1)
        }
    }

    private func badgeBox(_ p: (Double, Double)) -> PictureText.Box {
        PictureText.Box(x: p.0 - Self.badgeRadius, y: p.1 - Self.badgeRadius, w: 2 * Self.badgeRadius, h: 2 * Self.badgeRadius).grown(2)
    }

    /// The first candidate that touches nothing placed, no node and no edge (but `own`, the
    /// edge a badge sits on); else the one that touches least.
    private func choose<T>(_ candidates: [(T, PictureText.Box)], avoiding own: Edge?) -> (T, PictureText.Box) {
        var best = candidates[0], fewest = Int.max
        for candidate in candidates {
            let box = candidate.1
            var hits = taken.filter { $0.intersects(box) }.count * 10 + nodes.filter { $0.intersects(box) }.count * 10
            let grown = box.grown(1)
            for (edge, points) in samples where edge != own && extents[edge]?.intersects(grown) != false {
                if points.contains(where: { grown.contains($0) }) { hits += 1 }
            }
            if hits == 0 { return candidate }
            if hits < fewest { fewest = hits; best = candidate }
        }
        return best
    }
}
