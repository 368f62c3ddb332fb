/// Text sizes for the pictures' layout passes. No browser measures here, so the estimates err
/// wide: DejaVu Sans (the first font the pictures ask for) averages ~0.6 em per character;
/// 0.64 em, and 0.72 em for bold, keep estimated boxes at or beyond what Chromium's getBBox
/// reports (checked by the collision test over every gallery picture).
enum PictureText {
    static func width(_ text: String, size: Double, bold: Bool = false) -> Double {
        Double(text.count) * size * (bold ? 0.72 : 0.64)
    }

    /// A box, for overlap checks.
    struct Box {
        var x: Double, y: Double, w: Double, h: Double
        func intersects(_ o: Box) -> Bool { x < o.x + o.w && o.x < x + w && y < o.y + o.h && o.y < y + h }
        func contains(_ p: (Double, Double)) -> Bool { p.0 > x && p.0 < x + w && p.1 > y && p.1 < y + h }
        func grown(_ d: Double) -> Box { Box(x: x - d, y: y - d, w: w + 2 * d, h: h + 2 * d) }
    }

    /// The box of a text drawn at baseline `y`, anchored at `x` (`start`, `middle`, `end`).
    static func box(_ text: String, x: Double, y: Double, size: Double, anchor: String, bold: Bool = false) -> Box {
        let w = width(text, size: size, bold: bold)
        let left = anchor == "end" ? x - w : anchor == "middle" ? x - w / 2 : x
        return Box(x: left, y: y - size * 0.95, w: w, h: size * 1.25)
    }

    /// `text` broken at spaces into lines no wider than `maxWidth` (a word wider than that
    /// gets a line of its own).
    static func lines(_ text: String, maxWidth: Double, size: Double, bold: Bool = false) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            let candidate = current.isEmpty ? String(word) : current + " " + word
            if !current.isEmpty && width(candidate, size: size, bold: bold) > maxWidth {
                lines.append(current)
                current = String(word)
            } else {
                current = candidate
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }
}
