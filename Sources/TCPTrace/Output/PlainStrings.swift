/// Strings the JSON writer has seen need no escaping, so their next appearance is copied
/// without the scan: a traced connection's causes are a handful of our own literals ("peer's
/// FIN arrived", "accept()"), up to ~100 bytes each, and scanning
/// them was ~2,900 instructions a connection, the JSON line's largest single cost (callgrind,
/// connect churn). A hit compares the string with the one remembered (for the same literal,
/// one comparison of its bits; else a memcmp), so a string is copied unescaped only when it
/// is equal to one that needed no escaping: the output is the bytes the scan would write
/// (TraceRendererTests compare both paths, and strings that do need escaping).
///
/// Four ways of eight sets, chosen by a fingerprint of the string (its length and its first and
/// last eight bytes), which each slot keeps too: a slot's string is compared only when the
/// fingerprints agree. Sets chosen by length alone put a connection's causes of equal length in
/// one set, and each lookup compared the string with other literals of that length
/// (`_stringCompareInternal`, ~470 instructions a connection; callgrind).
/// Not thread-safe: the trace writer keeps one under its lock.
package struct PlainStrings {
    private var slots: [String]
    /// Each slot's fingerprint (0: empty; no string's is 0).
    private var fingerprints: [UInt64]
    /// The way each set replaces next.
    private var victims: [UInt8]
    private static let sets = 8
    private static let ways = 4

    /// `remembering` false: a pass-through that always scans (one-off renders).
    package init(remembering: Bool = true) {
        slots = remembering ? Array(repeating: "", count: Self.sets * Self.ways) : []
        fingerprints = remembering ? Array(repeating: 0, count: Self.sets * Self.ways) : []
        victims = remembering ? Array(repeating: 0, count: Self.sets) : []
    }

    /// `text` JSON-escaped into `out` (no quotes).
    package mutating func appendEscaped(_ text: String, into out: inout TraceBytes) {
        guard !slots.isEmpty else { out.appendJSONEscaped(text); return }
        let fingerprint = Self.fingerprint(text)
        guard fingerprint != 0 else { return }   // the empty string
        let set = Int(truncatingIfNeeded: fingerprint >> 32) & (Self.sets - 1)
        let first = set * Self.ways
        for slot in first..<(first + Self.ways) where fingerprints[slot] == fingerprint && slots[slot] == text {
            out.append(text)
            return
        }
        if !out.appendJSONEscaped(text) {
            let slot = first + Int(victims[set])
            slots[slot] = text
            fingerprints[slot] = fingerprint
            victims[set] = (victims[set] + 1) & UInt8(Self.ways - 1)
        }
    }

    /// Length, first and last eight bytes (fewer when shorter), mixed; 0 only for "".
    static func fingerprint(_ text: String) -> UInt64 {
        return text.withUTF8Bytes { bytes -> UInt64 in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
            let head = UnsafeRawPointer(base), count = bytes.count
            var front: UInt64 = 0, back: UInt64 = 0
            if count >= 8 {
                front = head.loadUnaligned(as: UInt64.self)
                back = head.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            } else {
                for index in 0..<count { front = front << 8 | UInt64(bytes[index]) }
            }
            var mixed = (front ^ UInt64(count)) &* 0x9E37_79B9_7F4A_7C15
            mixed = (mixed ^ (mixed >> 29) ^ back) &* 0xBF58_476D_1CE4_E5B9
            mixed ^= mixed >> 32
            return mixed == 0 ? 1 : mixed
        }
    }
}
