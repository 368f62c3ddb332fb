import SocketKit

import Glibc

/// Maps trace time to the picture's vertical position.
///
/// Loopback events come microseconds apart and TIME_WAIT lasts 60 s, so no linear scale
/// shows both. Every instant that matters (a transition, a segment sent or received) gets its
/// own row; the space between rows grows with the logarithm of the time between them; a gap
/// longer than `breakNs` becomes a fixed-height break marked with its real length. Times
/// between rows are placed linearly between them, so order is always kept.
struct LadderTimeAxis {
    /// A compressed stretch of time, drawn as a zigzag with its length.
    struct Break: Equatable {
        var fromY: Double
        var toY: Double
        var ns: UInt64
    }

    static let rowStep = 22.0
    static let breakHeight = 46.0
    static let breakNs: UInt64 = 500_000_000

    private(set) var rows: [(ns: UInt64, y: Double)] = []
    private(set) var breaks: [Break] = []
    let top: Double
    var bottom: Double { rows.last?.y ?? top }

    /// - Parameter instants: the row times, ascending; equal times get one row each, in order.
    init(instants: [UInt64], top: Double) {
        self.top = top
        var y = top
        for ns in instants {
            if let last = rows.last {
                let gap = ns - last.ns
                if gap > Self.breakNs {
                    breaks.append(Break(fromY: y + 8, toY: y + Self.breakHeight - 8, ns: gap))
                    y += Self.breakHeight
                } else {
                    y += Self.step(gap)
                }
            }
            rows.append((ns, y))
        }
    }

    /// Space for a gap: one row, plus ~7 px per decade above 1 µs (1 ms ≈ 43 px, 100 ms ≈ 57 px).
    static func step(_ gapNs: UInt64) -> Double {
        let micros = Double(gapNs) / 1000
        return micros < 1 ? rowStep : rowStep + 7 * log10(micros)
    }

    /// Any time: linear between the rows around it, clamped to the axis.
    func y(at ns: UInt64) -> Double {
        guard let first = rows.first, let last = rows.last else { return top }
        if ns <= first.ns { return first.y }
        if ns >= last.ns { return last.y }
        var upper = rows.firstIndex { $0.ns >= ns } ?? rows.count - 1
        if rows[upper].ns == ns { return rows[upper].y }
        upper = max(upper, 1)
        let a = rows[upper - 1], b = rows[upper]
        let fraction = Double(ns - a.ns) / Double(max(b.ns - a.ns, 1))
        return a.y + (b.y - a.y) * fraction
    }
}
