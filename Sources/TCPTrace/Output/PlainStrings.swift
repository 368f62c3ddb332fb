/// Strings the JSON writer has seen need no escaping, so their next appearance is copied
/// without the scan: a traced connection's causes are a handful of our own literals ("peer's
/// FIN arrived", "accept()"), up to ~100 bytes each, and scanning
/// them was ~2,900 instructions a connection, the JSON line's largest single cost (callgrind,
/// connect churn). A hit compares the string with the one remembered (for the same literal,
/// one comparison of its bits; else a memcmp), so a string is copied unescaped only when it
/// is equal to one that needed no escaping: the output is the bytes the scan would write
/// (TraceRendererTests compare both paths, and strings that do need escaping).
///
/// Four ways of eight sets, chosen by length: a connection's causes are often the same length
/// (three of them are 52 bytes), so a direct-mapped table missed one lookup in two.
/// Not thread-safe: the trace writer keeps one under its lock.
package struct PlainStrings {
    private var slots: [String]
    /// The way each set replaces next.
    private var victims: [UInt8]
    private static let sets = 8
    private static let ways = 4

    /// `remembering` false: a pass-through that always scans (one-off renders).
    package init(remembering: Bool = true) {
        slots = remembering ? Array(repeating: "", count: Self.sets * Self.ways) : []
        victims = remembering ? Array(repeating: 0, count: Self.sets) : []
    }

    /// `text` JSON-escaped into `out` (no quotes).
    package mutating func appendEscaped(_ text: String, into out: inout TraceBytes) {
        guard !slots.isEmpty else { out.appendJSONEscaped(text); return }
        let count = text.utf8.count
        guard count > 0 else { return }
        let set = count & (Self.sets - 1)
        let first = set * Self.ways
        for slot in first..<(first + Self.ways) where slots[slot] == text {
            out.append(text)
            return
        }
        if !out.appendJSONEscaped(text) {
            slots[first + Int(victims[set])] = text
            victims[set] = (victims[set] + 1) & UInt8(Self.ways - 1)
        }
    }
}
