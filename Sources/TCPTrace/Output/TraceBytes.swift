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

    /// Disfavoured: a literal (`out.append(", ")`) then takes the StaticString overload, its
    /// bytes copied straight from the binary. Without it Swift picks String for every literal,
    /// each then made a String and read through `withUTF8` (~25 a line in the text renderer).
    @_disfavoredOverload
    @inline(__always)
    package mutating func append(_ text: String) {
        text.withUTF8Bytes { append($0) }
    }

    /// A copy of bytes this buffer already holds (`range` of what was written): a number
    /// printed a second time is copied, not formatted again.
    @inline(__always)
    package mutating func appendCopy(of range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= storage.count, "appendCopy outside the written bytes")
        storage.reserve(range.count)
        // After the reservation: it may have moved the bytes. Source and destination never overlap.
        (storage.base + storage.count).update(from: storage.base + range.lowerBound, count: range.count)
        storage.count += range.count
    }

    /// Exactly `count` bytes, written by `body` in place.
    @inline(__always)
    package mutating func appendFixed(_ count: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Void) {
        storage.reserve(count)
        body(storage.base + storage.count)
        storage.count += count
    }

    /// `,"name":` (comma optional): a JSON member's key in one reserve.
    @inline(__always)
    package mutating func appendKey(_ name: UnsafeBufferPointer<UInt8>, comma: Bool) {
        let total = name.count + (comma ? 4 : 3)
        storage.reserve(total)
        var cursor = storage.base + storage.count
        if comma { cursor.pointee = UInt8(ascii: ","); cursor += 1 }
        cursor.pointee = UInt8(ascii: "\""); cursor += 1
        if let source = name.baseAddress { cursor.update(from: source, count: name.count) }
        cursor += name.count
        cursor.pointee = UInt8(ascii: "\""); cursor += 1
        cursor.pointee = UInt8(ascii: ":")
        storage.count += total
    }

    package mutating func append(repeating byte: UInt8, count: Int) {
        guard count > 0 else { return }
        storage.reserve(count)
        (storage.base + storage.count).initialize(repeating: byte, count: count)
        storage.count += count
    }

    /// Decimal digits of `value`, at least `minimumDigits` (zero-padded on the left). Written
    /// backwards in one pass into the reserved space's tail, then moved into place.
    package mutating func append(_ value: UInt64, minimumDigits: Int = 1) {
        storage.reserve(max(20, minimumDigits))
        let start = storage.base + storage.count
        var cursor = start + 20
        var remaining = value
        // Two digits a division: a nanosecond timestamp has 13–19 (~180 instructions one at a
        // time, five numbers a JSON event; callgrind).
        while remaining >= 100 {
            let pair = Int(remaining % 100)
            remaining /= 100
            cursor -= 2
            cursor[0] = Self.digitPairs[pair &* 2]
            cursor[1] = Self.digitPairs[pair &* 2 &+ 1]
        }
        if remaining >= 10 {
            cursor -= 2
            cursor[0] = Self.digitPairs[Int(remaining) &* 2]
            cursor[1] = Self.digitPairs[Int(remaining) &* 2 &+ 1]
        } else {
            cursor -= 1
            cursor.pointee = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining)
        }
        var digits = start + 20 - cursor
        if digits < minimumDigits {
            // Rare (fractions of a second): the zeros go first, the digits after them.
            let zeros = minimumDigits - digits
            memmove(start + zeros, cursor, digits)
            start.update(repeating: UInt8(ascii: "0"), count: zeros)
            digits = minimumDigits
        } else {
            memmove(start, cursor, digits)
        }
        storage.count += digits
    }

    /// "00" "01" … "99", two bytes each: a literal's bytes, no array (no bounds or lazy-init
    /// check per digit).
    static var digitPairs: UnsafePointer<UInt8> {
        ("00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899" as StaticString).utf8Start
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
        append(text, filling: width - Self.columns(text), left: left)
    }

    /// ASCII `text` (addresses, state names) padded to `width` columns: bytes are columns.
    package mutating func append(ascii text: String, padTo width: Int, left: Bool = false) {
        append(text, filling: width - text.utf8.count, left: left)
    }

    private mutating func append(_ text: String, filling fill: Int, left: Bool) {
        if left { append(repeating: UInt8(ascii: " "), count: fill) }
        append(text)
        if !left { append(repeating: UInt8(ascii: " "), count: fill) }
    }

    /// Characters, as `TextTraceRenderer.pad` counts them; ASCII (addresses, state names) by a
    /// scan of its bytes. `utf8.allSatisfy` did the same through the generic collection path at
    /// ~9,000 instructions per connection of a traced server (callgrind, connect churn).
    static func columns(_ text: String) -> Int {
        let ascii = text.withUTF8Bytes { bytes in
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
        appendJSONEscaped(text)
        append(byte: UInt8(ascii: "\""))
    }

    /// `text` escaped for inside a JSON string literal (no quotes). Returns whether any byte
    /// needed escaping.
    @discardableResult
    package mutating func appendJSONEscaped(_ text: String) -> Bool {
        return text.withUTF8Bytes { utf8 in
            // Eight bytes at a time while none needs escaping (almost always): a loop byte by
            // byte cost ~350 instructions per string, 8 strings a JSON event (callgrind).
            var runStart = 0
            var index = 0
            let count = utf8.count
            let raw = UnsafeRawBufferPointer(utf8)
            while index < count {
                if index + 8 <= count, !Self.mayNeedEscape(raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)) {
                    index += 8
                    continue
                }
                if index + 8 > count {
                    // The last 1–7 bytes (a short string's all): one word padded with "A"s.
                    var tail: UInt64 = 0x4141_4141_4141_4141
                    withUnsafeMutableBytes(of: &tail) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[index..<count])) }
                    if !Self.mayNeedEscape(tail) { break }
                }
                let byte = utf8[index]
                index += 1
                guard byte < 0x20 || byte == 0x22 || byte == 0x5c || byte == 0x7f else { continue }
                append(UnsafeBufferPointer(rebasing: utf8[runStart..<(index - 1)]))
                runStart = index
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
            return runStart > 0
        }
    }

    /// Whether any of the 8 bytes in `word` is below 0x20, `"`, `\` or DEL (bit tricks from
    /// "Bit Twiddling Hacks": `(x - 0x01…) & ~x & 0x80…` is non-zero when a byte of x is 0,
    /// and with 0x20… when one is below 0x20). A false positive only sends the word through the
    /// byte loop, which decides.
    @inline(__always)
    static func mayNeedEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func hasZeroByte(_ x: UInt64) -> UInt64 { (x &- ones) & ~x & highs }
        let control = (word &- ones &* 0x20) & ~word & highs
        return (control | hasZeroByte(word ^ (ones &* 0x22)) | hasZeroByte(word ^ (ones &* 0x5c))
                | hasZeroByte(word ^ (ones &* 0x7f))) != 0
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
