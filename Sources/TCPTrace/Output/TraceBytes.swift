import Glibc

/// The byte buffer trace lines are rendered into: reused line after line by the writer thread,
/// so rendering an event allocates nothing once the buffer has grown to a batch's size
/// (measured before: String building was 21% of the traced server's CPU under connect churn
/// with text, 53% with JSON).
///
/// Appends raw UTF-8; callers keep it valid (every piece is either a Swift `String`, ASCII, or
/// an escaped copy of peer bytes).
package struct TraceBytes {
    /// One owner: the renderer's caller keeps a TraceBytes and passes it `inout`; copies would
    /// share the storage, and none is made. Raw memory rather than an Array: an append is a
    /// bounds check and a memcpy, without Array's uniqueness and capacity checks per call
    /// (~30 appends make a JSON line).
    ///
    /// `@exclusivity(unchecked)`: a class's `var` is otherwise checked at run time on every
    /// access (`swift_beginAccess`, ~6% of a traced server's instructions in callgrind, most of
    /// it here); one owner, passed `inout`, cannot overlap its own accesses.
    private final class Storage {
        @exclusivity(unchecked) var base: UnsafeMutablePointer<UInt8>
        @exclusivity(unchecked) var count = 0
        @exclusivity(unchecked) var capacity: Int

        init(capacity: Int) {
            self.capacity = max(capacity, 64)
            base = .allocate(capacity: self.capacity)
        }

        deinit { base.deallocate() }

        @inline(__always)
        func reserve(_ extra: Int) {
            if count + extra > capacity { grow(extra) }
        }

        @inline(never)
        private func grow(_ extra: Int) {
            var grown = capacity * 2
            while grown < count + extra { grown *= 2 }
            let next = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
            next.update(from: base, count: count)
            base.deallocate()
            base = next
            capacity = grown
        }
    }

    private let storage: Storage
    /// JSON writing: a member was written in the current object (see `key`).
    var needsComma = false

    package init(capacity: Int = 0) { storage = Storage(capacity: capacity) }

    package var count: Int { storage.count }
    package var isEmpty: Bool { storage.count == 0 }

    /// Empties the buffer; without `keepingCapacity` a grown buffer (a burst) shrinks back.
    package mutating func removeAll(keepingCapacity: Bool) {
        storage.count = 0
        if !keepingCapacity && storage.capacity > 64 * 1024 {
            storage.base.deallocate()
            storage.capacity = 64 * 1024
            storage.base = .allocate(capacity: storage.capacity)
        }
    }

    /// The bytes written so far.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.count))
    }

    @inline(__always)
    package mutating func append(byte: UInt8) {
        storage.reserve(1)
        storage.base[storage.count] = byte
        storage.count += 1
    }

    @inline(__always)
    package mutating func append(_ buffer: UnsafeBufferPointer<UInt8>) {
        guard let source = buffer.baseAddress, buffer.count > 0 else { return }
        storage.reserve(buffer.count)
        (storage.base + storage.count).update(from: source, count: buffer.count)
        storage.count += buffer.count
    }

    @inline(__always)
    package mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { append($0) }
    }

    @inline(__always)
    package mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    package mutating func append(repeating byte: UInt8, count: Int) {
        guard count > 0 else { return }
        storage.reserve(count)
        (storage.base + storage.count).initialize(repeating: byte, count: count)
        storage.count += count
    }

    /// Decimal digits of `value`, at least `minimumDigits` (zero-padded on the left).
    package mutating func append(_ value: UInt64, minimumDigits: Int = 1) {
        var digits = 1
        var rest = value / 10
        while rest > 0 { digits += 1; rest /= 10 }
        let width = max(digits, minimumDigits)
        storage.reserve(width)
        var cursor = storage.base + storage.count + width - 1
        var remaining = value
        for _ in 0..<width {
            cursor.pointee = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
            cursor -= 1
        }
        storage.count += width
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
        let fill = width - Self.columns(text)
        if left { append(repeating: UInt8(ascii: " "), count: fill) }
        append(text)
        if !left { append(repeating: UInt8(ascii: " "), count: fill) }
    }

    /// ASCII `text` (addresses, state names) padded to `width` columns: bytes are columns.
    package mutating func append(ascii text: String, padTo width: Int, left: Bool = false) {
        let fill = width - text.utf8.count
        if left { append(repeating: UInt8(ascii: " "), count: fill) }
        append(text)
        if !left { append(repeating: UInt8(ascii: " "), count: fill) }
    }

    /// Characters, as `TextTraceRenderer.pad` counts them; ASCII (addresses, state names) by a
    /// scan of its bytes. `utf8.allSatisfy` did the same through the generic collection path at
    /// ~9,000 instructions per connection of a traced server (callgrind, connect churn).
    static func columns(_ text: String) -> Int {
        var text = text
        let ascii = text.withUTF8 { bytes in
            var high: UInt8 = 0
            for byte in bytes { high |= byte }
            return high < 0x80 ? bytes.count : nil
        }
        return ascii ?? text.count
    }

    /// Pads what was written since `start` to `width` columns (ASCII: bytes are columns).
    package mutating func pad(from start: Int, to width: Int, left: Bool = false) {
        let written = storage.count - start
        guard written < width else { return }
        let fill = width - written
        if left {
            storage.reserve(fill)
            let from = storage.base + start
            memmove(from + fill, from, written)   // the regions overlap
            from.update(repeating: UInt8(ascii: " "), count: fill)
            storage.count += fill
        } else {
            append(repeating: UInt8(ascii: " "), count: fill)
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
                append(UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
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
            append(UnsafeBufferPointer(rebasing: utf8[runStart...]))
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

    package var string: String {
        String(decoding: UnsafeBufferPointer(start: storage.base, count: storage.count), as: UTF8.self)
    }
}
