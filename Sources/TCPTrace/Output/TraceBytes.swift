/// The byte buffer trace lines are rendered into: reused line after line by the writer thread,
/// so rendering an event allocates nothing once the buffer has grown to a batch's size
/// (measured before: String building was 21% of the traced server's CPU under connect churn
/// with text, 53% with JSON).
///
/// Appends raw UTF-8; callers keep it valid (every piece is either a Swift `String`, ASCII, or
/// an escaped copy of peer bytes).
package struct TraceBytes {
    package var bytes: [UInt8] = []
    /// JSON writing: a member was written in the current object (see `key`).
    var needsComma = false

    package init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    package var count: Int { bytes.count }
    package var isEmpty: Bool { bytes.isEmpty }

    package mutating func removeAll(keepingCapacity: Bool) { bytes.removeAll(keepingCapacity: keepingCapacity) }

    @inline(__always)
    package mutating func append(byte: UInt8) { bytes.append(byte) }

    @inline(__always)
    package mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    @inline(__always)
    package mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    package mutating func append(repeating byte: UInt8, count: Int) {
        guard count > 0 else { return }
        bytes.append(contentsOf: repeatElement(byte, count: count))
    }

    /// Decimal digits of `value`, at least `minimumDigits` (zero-padded on the left).
    package mutating func append(_ value: UInt64, minimumDigits: Int = 1) {
        var digits = 1
        var rest = value / 10
        while rest > 0 { digits += 1; rest /= 10 }
        let width = max(digits, minimumDigits)
        let end = bytes.count + width
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width))
        var index = end - 1
        var remaining = value
        repeat {
            bytes[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
            index -= 1
        } while remaining > 0
    }

    package mutating func append<I: BinaryInteger>(int value: I) {
        if value < 0 {
            append(byte: UInt8(ascii: "-"))
            append(UInt64(value.magnitude))
        } else {
            append(UInt64(value))
        }
    }

    /// `text` right-aligned (`left: true`) or left-aligned in `width` columns (characters, as
    /// `TextTraceRenderer.pad` counts them; ASCII, the usual case, is counted by bytes).
    package mutating func append(_ text: String, padTo width: Int, left: Bool = false) {
        let fill = width - (text.utf8.allSatisfy { $0 < 0x80 } ? text.utf8.count : text.count)
        if left { append(repeating: UInt8(ascii: " "), count: fill) }
        append(text)
        if !left { append(repeating: UInt8(ascii: " "), count: fill) }
    }

    /// Bytes appended since `start`, for padding what was just written.
    package mutating func pad(from start: Int, to width: Int, left: Bool = false) {
        let written = bytes.count - start
        guard written < width else { return }
        if left {
            bytes.insert(contentsOf: repeatElement(UInt8(ascii: " "), count: width - written), at: start)
        } else {
            append(repeating: UInt8(ascii: " "), count: width - written)
        }
    }

    /// A JSON string literal: `"`, `\` and control characters escaped (\n, \r, \t, else
    /// \u00XX, DEL included); other UTF-8 passes unchanged.
    package mutating func appendJSONString(_ text: String) {
        append(byte: UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5c || byte == 0x7f {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                runStart = index + 1
                switch byte {
                case UInt8(ascii: "\""): append("\\\"")
                case UInt8(ascii: "\\"): append("\\\\")
                case UInt8(ascii: "\n"): append("\\n")
                case UInt8(ascii: "\r"): append("\\r")
                case UInt8(ascii: "\t"): append("\\t")
                default:
                    append("\\u00")
                    append(byte: Self.hexDigits[Int(byte >> 4)])
                    append(byte: Self.hexDigits[Int(byte & 0xf)])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        append(byte: UInt8(ascii: "\""))
    }

    /// Peer bytes made safe for a terminal, as `ByteEscaping.escape` does, without a String.
    package mutating func appendEscaped(_ peerBytes: [UInt8], limit: Int) {
        for (count, byte) in peerBytes.enumerated() {
            if count == limit { append("…"); return }
            switch byte {
            case UInt8(ascii: "\\"): append("\\\\")
            case UInt8(ascii: "\n"): append("\\n")
            case UInt8(ascii: "\r"): append("\\r")
            case UInt8(ascii: "\t"): append("\\t")
            case 0x20...0x7e: append(byte: byte)
            default:
                append("\\x")
                append(byte: Self.hexDigits[Int(byte >> 4)])
                append(byte: Self.hexDigits[Int(byte & 0xf)])
            }
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    package var string: String { String(decoding: bytes, as: UTF8.self) }
}
