import Glibc
import SocketKit

extension TraceEvent {
    /// Reads one line of our own JSON Lines output back (for `--merge`); nil if it is not one.
    /// Both formats: version 1 (every key on every event, `null` when unknown) and the lean
    /// version 2 (`"v":2`, absent instead of null): a missing key and a null read the same.
    ///
    /// A small flat-object reader instead of Foundation's JSONSerialization: importing
    /// Foundation anywhere in SocketKit links ~7 MiB of libraries into EchoServer's resident set.
    public init?(jsonLine line: Substring) {
        guard let object = FlatJSON.parseObject(line) else { return nil }
        guard let ts = object["ts_ns"]?.uint64,
              let side = object["side"]?.string.flatMap(TraceSide.init(rawValue:)),
              let kind = object["event"]?.string.flatMap(Kind.init(rawValue:))
        else { return nil }
        self.init(timestampNs: ts, side: side,
                  pid: object["pid"]?.int.map(Int32.init(truncatingIfNeeded:)) ?? 0,
                  conn: object["conn"]?.int ?? 0,
                  local: object["local"]?.string, peer: object["peer"]?.string,
                  cookie: object["cookie"]?.uint64, kind: kind,
                  from: object["from"]?.string.flatMap(TCPState.init(name:)),
                  to: object["to"]?.string.flatMap(TCPState.init(name:)),
                  source: object["source"]?.string.flatMap(ObservationSource.init(rawValue:)),
                  cause: object["cause"]?.string ?? "",
                  inStateNs: object["in_state_ns"]?.uint64)
        unexpected = object["unexpected"]?.bool ?? false
        timerMs = object["timer_ms"]?.uint64.map(UInt32.init(truncatingIfNeeded:))
        errno = object["errno"]?.int.map(Int32.init(truncatingIfNeeded:))
        segmentID = object["segment"]?.int
        earliestNs = object["earliest_ns"]?.uint64
        latestNs = object["latest_ns"]?.uint64
        attempt = object["try"]?.int
        if kind == .segment, let nested = object["wire"]?.nestedText, let fields = FlatJSON.parseObject(nested[...]) {
            wire = Self.segment(fields, id: segmentID ?? 0, timestampNs: ts, local: local, peer: peer)
        }
        byteCount = object["bytes"]?.int
        if let outcome = object["verdict"]?.string.flatMap(ExchangeVerdict.Outcome.init(rawValue:)) {
            verdict = ExchangeVerdict(outcome: outcome, sent: object["sent"]?.int ?? 0, received: object["received"]?.int ?? 0,
                                      firstDifference: object["first_difference"]?.int)
        }
    }

    /// A `wire` object back into a segment (header fields and the options `--merge` draws).
    static func segment(_ f: [String: FlatJSON.Value], id: Int, timestampNs: UInt64, local: String?, peer: String?) -> WireSegment? {
        guard let source = local.flatMap(WireEndpoint.init(text:)), let destination = peer.flatMap(WireEndpoint.init(text:)),
              let flags = f["flags"]?.string.flatMap(TCPFlags.init(text:)),
              let seq = f["seq_abs"]?.uint64, let relativeSeq = f["seq"]?.uint64, let length = f["len"]?.int,
              let rawWindow = f["win_raw"]?.uint64, let window = f["win"]?.uint64
        else { return nil }
        var options = TCPOptions()
        options.mss = f["mss"]?.uint64.map(UInt16.init(truncatingIfNeeded:))
        options.windowScale = f["wscale"]?.uint64.map(UInt8.init(truncatingIfNeeded:))
        options.sackPermitted = f["sack_permitted"]?.bool ?? false
        if let value = f["ts_val"]?.uint64, let echo = f["ts_ecr"]?.uint64 {
            options.timestamp = .init(value: UInt32(truncatingIfNeeded: value), echoReply: UInt32(truncatingIfNeeded: echo))
        }
        let sender: TraceSide? = f["direction"]?.string.map { $0.hasPrefix("client") ? .client : .server }
        let ackAbsolute = f["ack_abs"]?.uint64.map(UInt32.init(truncatingIfNeeded:))
        let ackRelative = f["ack"]?.uint64.map(UInt32.init(truncatingIfNeeded:))
        var segment = WireSegment(
            id: id, timestampNs: timestampNs, wallNs: 0, source: source, destination: destination, sender: sender, flags: flags,
            seq: UInt32(truncatingIfNeeded: seq), ack: ackAbsolute ?? 0,
            relativeSeq: UInt32(truncatingIfNeeded: relativeSeq), relativeAck: ackRelative,
            ackBase: ackAbsolute.flatMap { absolute in ackRelative.map { absolute &- $0 } },
            length: length, rawWindow: UInt16(truncatingIfNeeded: rawWindow),
            scaledWindow: (f["win_exact"]?.bool ?? false) ? UInt32(truncatingIfNeeded: window) : nil, options: options)
        segment.fault = f["fault"]?.string.flatMap { SegmentFault(name: $0, delayNs: f["fault_delay_ns"]?.uint64) }
        return segment
    }

    /// Every event of a JSON Lines file, skipping lines that are not events. C: `open`/`read`.
    public static func read(jsonLinesAt path: String) throws -> [TraceEvent] {
        let text = try TextFile.read(path)
        return text.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
    }
}

/// Top-level members of one JSON object: strings, numbers, booleans; nested values are
/// validated and skipped.
enum FlatJSON {
    enum Value {
        case string(String), number(Substring), bool(Bool), null, nested(String)

        /// An object or array member's own JSON text (the segment's `wire` object).
        var nestedText: String? { if case .nested(let text) = self { return text }; return nil }

        var string: String? { if case .string(let s) = self { return s }; return nil }
        var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
        var uint64: UInt64? { if case .number(let n) = self { return UInt64(n) }; return nil }
        var int: Int? { if case .number(let n) = self { return Int(n) }; return nil }
    }

    static func parseObject(_ text: Substring) -> [String: Value]? {
        var scanner = Scanner(bytes: Array(text.utf8))
        scanner.skipSpace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        var object: [String: Value] = [:]
        scanner.skipSpace()
        if scanner.take(UInt8(ascii: "}")) { return scanner.atEndAfterSpace ? object : nil }
        repeat {
            scanner.skipSpace()
            guard let key = scanner.string() else { return nil }
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: ":")), let value = scanner.value() else { return nil }
            object[key] = value
            scanner.skipSpace()
        } while scanner.take(UInt8(ascii: ","))
        guard scanner.take(UInt8(ascii: "}")), scanner.atEndAfterSpace else { return nil }
        return object
    }

    struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }
        var atEndAfterSpace: Bool { mutating get { skipSpace(); return index == bytes.count } }

        mutating func skipSpace() {
            while let b = peek, b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0d { index += 1 }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func literal(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard index + w.count <= bytes.count, Array(bytes[index..<index + w.count]) == w else { return false }
            index += w.count
            return true
        }

        mutating func value() -> Value? {
            skipSpace()
            guard let b = peek else { return nil }
            switch b {
            case UInt8(ascii: "\""): return string().map(Value.string)
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let start = index
                return skipNested() ? .nested(String(decoding: bytes[start..<index], as: UTF8.self)) : nil
            default:
                let start = index
                while let c = peek, c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                        || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || (c >= 0x30 && c <= 0x39) { index += 1 }
                guard index > start else { return nil }
                return .number(Substring(String(decoding: bytes[start..<index], as: UTF8.self)))
            }
        }

        /// A balanced object or array; strings inside may hold brackets.
        mutating func skipNested() -> Bool {
            var depth = 0
            while let b = peek {
                if b == UInt8(ascii: "\"") { guard string() != nil else { return false }; continue }
                index += 1
                if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
                if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") { depth -= 1; if depth == 0 { return true } }
            }
            return false
        }

        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            var out: [UInt8] = []
            while let b = peek {
                index += 1
                switch b {
                case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let e = peek else { return nil }
                    index += 1
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0a)
                    case UInt8(ascii: "r"): out.append(0x0d)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0c)
                    case UInt8(ascii: "u"):
                        guard var scalar = hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(scalar), literal("\\u"), let low = hex4(), (0xDC00..<0xE000).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        out.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
                    default: out.append(e)   // \" \\ \/
                    }
                default: out.append(b)
                }
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard index + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else { return nil }
            index += 4
            return v
        }
    }
}
