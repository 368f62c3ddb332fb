import Foundation
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct TraceRendererTests {
    /// The keys that apply to the state event below: nothing unknown is written (no nulls).
    static let stateEventKeys: Set<String> = [
        "v", "ts_ns", "time", "side", "pid", "conn", "local", "peer", "cookie", "event", "from", "to", "source",
        "cause", "in_state_ns", "bytes", "data",
    ]

    /// The word-at-a-time scan of JSON strings escapes exactly what a byte-by-byte escaper
    /// does: every ASCII byte at every offset of a string longer than two words, plus UTF-8,
    /// and Foundation's parser reads each result back to the original.
    @Test func jsonStrings_escapeEveryByteAtEveryOffset() throws {
        func reference(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if scalar.value < 0x20 || scalar.value == 0x7f {
                        out += String(format: "\\u%04x", scalar.value)
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            return out + "\""
        }
        var samples: [[UInt8]] = []
        for byte in UInt8(0)...0x7f {
            for offset in 0..<19 {
                var bytes = Array("abcdefghijklmnopqrs·".utf8)
                bytes[offset] = byte
                samples.append(bytes)
            }
            for length in 1...9 {   // short strings and tails: the byte last, and first
                samples.append(Array(repeating: UInt8(ascii: "x"), count: length - 1) + [byte])
                samples.append([byte] + Array(repeating: UInt8(ascii: "y"), count: length - 1))
            }
        }
        for bytes in samples {
            do {
                let byte = bytes.first { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c || $0 == 0x7f } ?? 0
                let offset = bytes.count
                let text = String(decoding: bytes, as: UTF8.self)
                var out = TraceBytes()
                out.appendJSONString(text)
                #expect(out.string == reference(text), "byte \(byte) at \(offset)")
                let parsed = try JSONSerialization.jsonObject(with: Data(out.string.utf8), options: .fragmentsAllowed) as? String
                #expect(parsed == text, "byte \(byte) at \(offset)")
            }
        }
    }

    @Test func json_carriesOnlyTheKeysThatApply_andParses() throws {
        var event = TraceEvent(timestampNs: 42, side: .server, conn: 3, local: "127.0.0.1:7007", peer: "127.0.0.1:5",
                               cookie: 9, kind: .state, from: .established, to: .closeWait, source: .tcpInfo,
                               cause: "recv()=0: \"quoted\"\n", inStateNs: 1000)
        event.bytes = [0x1b, 0x5b, 0x32, 0x4a, 0, 0xff]
        event.byteCount = 6
        let line = JSONTraceRenderer.render(event)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(Set(object.keys) == Self.stateEventKeys)
        #expect(object["v"] as? Int == JSONTraceRenderer.formatVersion)
        #expect(object["to"] as? String == "CLOSE_WAIT")
        #expect(object["cause"] as? String == "recv()=0: \"quoted\"\n")
        #expect(object["data"] as? String == "\\x1b[2J\\x00\\xff")
        let back = try #require(TraceEvent(jsonLine: Substring(line)))
        #expect(back.to == .closeWait && back.from == .established && back.conn == 3 && back.timestampNs == 42)
    }

    /// `--merge` reads traces written before the lean format: version 1 wrote every key, null
    /// when unknown, and had no `v`.
    @Test func json_version1Lines_stillDecode() throws {
        let v1 = #"{"ts_ns":490737165166,"time":"2026-12-04T07:43:08.442070Z","side":"server","pid":11984,"conn":0,"local":"127.0.0.1:37447","peer":null,"cookie":169653,"event":"state","from":"CLOSED","to":"LISTEN","source":"tracepoint","cause":"listen() (kernel sock:inet_sock_set_state); seen at listen(backlog 1024)","in_state_ns":null,"unexpected":false,"timer_ms":null,"errno":null,"errno_name":null,"bytes":null,"data":null,"tcp_info":null,"verdict":null,"sent":null,"received":null,"first_difference":null,"segment":null,"wire":null}"#
        let event = try #require(TraceEvent(jsonLine: Substring(v1)))
        #expect(event.kind == .state && event.from == .closed && event.to == .listen && event.source == .tracepoint)
        #expect(event.local == "127.0.0.1:37447" && event.peer == nil && event.cookie == 169653 && event.pid == 11984)
        #expect(event.inStateNs == nil && event.timerMs == nil && !event.unexpected)
        // And the same event written now reads back the same.
        let back = try #require(TraceEvent(jsonLine: Substring(JSONTraceRenderer.render(event))))
        #expect(back.to == event.to && back.local == event.local && back.cookie == event.cookie && back.cause == event.cause)
    }

    /// The `time` key is `ts_ns` plus one offset read once, formatted without gmtime_r: it must
    /// agree with gmtime_r's calendar, leap years and the end of a century included.
    /// The trace writer's path (`reusing:`, the second written last copied) agrees too, within
    /// a second and across seconds, days and years.
    @Test func rfc3339_matchesGmtime() {
        var last = RFC3339Second()
        for seconds: Int64 in [0, 951_782_400, 951_868_799, 951_868_800, 1_709_208_000, 4_102_444_800, 1_796_113_388, 1_796_113_389] {
            for fraction: Int64 in [123_456_789, 7_999, 900_000_000, 0] {
                let nanos = seconds * 1_000_000_000 + fraction
                var out = TraceBytes(), reused = TraceBytes()
                TraceTime.appendRFC3339(nanos, to: &out)
                TraceTime.appendRFC3339(nanos, to: &reused, reusing: &last)
                #expect(out.string == MonotonicClock.rfc3339(wallNanos: nanos))
                #expect(reused.string == out.string)
            }
        }
    }

    @Test func verdict_roundTripsThroughJSON_andRendersAsText() throws {
        var event = TraceEvent(timestampNs: 7, side: .client, conn: 1, kind: .verdict, cause: "echo differs: sent 6 bytes")
        event.verdict = ExchangeVerdict(outcome: .notEcho, sent: 6, received: 17, firstDifference: 0)
        event.bytes = Array("Hello\u{1b}[2J".utf8)
        event.byteCount = 17
        let line = JSONTraceRenderer.render(event)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["event"] as? String == "verdict")
        #expect(object["verdict"] as? String == "not_echo")
        #expect(object["sent"] as? Int == 6 && object["received"] as? Int == 17 && object["first_difference"] as? Int == 0)
        #expect(object["data"] as? String == "Hello\\x1b[2J")
        let back = try #require(TraceEvent(jsonLine: Substring(line)))
        #expect(back.kind == .verdict && back.verdict == event.verdict && back.byteCount == 17)
        let text = TextTraceRenderer(baseNs: 0, color: false).render(event)
        #expect(text.hasSuffix("VERDICT echo differs: sent 6 bytes"), "\(text)")
    }

    /// A kernel change's "seen at" call is kept apart from its cause and appended when written:
    /// text, JSON and `cause` read exactly as if the two had been joined, escaping included.
    @Test func seenAt_rendersAsTheJoinedCause() throws {
        let split = TraceEvent(timestampNs: 1_234_567, side: .server, conn: 7, local: "127.0.0.1:7007", peer: "127.0.0.1:40000",
                               kind: .state, from: .synReceived, to: .established, source: .tracepoint,
                               cause: "handshake \"complete\"", seenAt: "accept()\n")
        var joined = split
        joined.cause = "handshake \"complete\"; seen at accept()\n"
        #expect(split.cause == joined.cause)
        #expect(split.seenAt != nil && joined.seenAt == nil)
        let text = TextTraceRenderer(baseNs: 0, color: false)
        #expect(text.render(split) == text.render(joined))
        #expect(JSONTraceRenderer.render(split) == JSONTraceRenderer.render(joined))
        let back = try #require(TraceEvent(jsonLine: Substring(JSONTraceRenderer.render(split))))
        #expect(back.cause == split.cause)
    }

    /// The literal names the writers copy (`TraceNames.swift`) are the enums' own names.
    @Test func staticNames_matchRawValues() {
        for side in TraceSide.allCases { #expect(String(describing: side.staticName) == side.rawValue) }
        for source in ObservationSource.allCases { #expect(String(describing: source.staticName) == source.rawValue) }
        for kind in TraceEvent.Kind.allCases { #expect(String(describing: kind.staticName) == kind.rawValue) }
        #expect(TCPState.all.map(\.name) == ["CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1",
                                             "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT"])
        #expect(TCPState.unknown(42).name == "UNKNOWN(42)" && TCPState.unknown(42).staticName == nil)
        let odd = TraceEvent(timestampNs: 0, side: .server, conn: 1, kind: .state, from: .unknown(42), to: .closed,
                             source: .tracepoint, cause: "x")
        #expect(JSONTraceRenderer.render(odd).contains(#""from":"UNKNOWN(42)","to":"CLOSED","source":"tracepoint""#))
        #expect(TextTraceRenderer(baseNs: 0, color: false).render(odd).contains("UNKNOWN(42) → CLOSED"))
    }

    /// Every `FROM → TO` column copied from `TransitionColumns` is what the renderer's own
    /// path writes, for each pair of known states and a missing `from`; unknown states and a
    /// missing `to` are left to that path.
    @Test func transitionColumns_matchThePaddedNames() {
        let renderer = TextTraceRenderer(baseNs: 0, color: false)
        var checked = 0
        for from in TCPState.all.map(Optional.some) + [nil] {
            for to in TCPState.all {
                var event = TraceEvent(timestampNs: 0, side: .server, conn: 1, kind: .state, cause: "")
                event.from = from
                event.to = to
                var plain = TraceBytes(), copied = TraceBytes()
                renderer.appendTransition(event, into: &plain)
                #expect(TransitionColumns.append(from: from, to: to, into: &copied))
                #expect(copied.string == plain.string, "\(from?.name ?? "nil") → \(to.name)")
                checked += 1
            }
        }
        #expect(checked == 12 * 11)
        var none = TraceBytes()
        #expect(!TransitionColumns.append(from: .established, to: TCPState(kernel: 99), into: &none))
        #expect(!TransitionColumns.append(from: TCPState(kernel: 99), to: .closed, into: &none))
        #expect(none.count == 0)
        // A plain state line shows the columns; a coloured one keeps its colour codes.
        var event = TraceEvent(timestampNs: 0, side: .server, conn: 1, kind: .state, cause: "x")
        event.from = .synReceived
        event.to = .established
        #expect(renderer.render(event).contains("SYN_RECEIVED → ESTABLISHED "))
        #expect(TextTraceRenderer(baseNs: 0, color: true).render(event).contains("\u{1b}[32mSYN_RECEIVED → ESTABLISHED \u{1b}[0m"))
    }

    /// `earliest_ns`/`latest_ns` equal to `ts_ns` are copied from its digits; other values are
    /// formatted. Both paths (plain and the writer's, with remembered identities) print the
    /// numbers the event holds, and the line decodes back to them.
    @Test func jsonIntervalNumbers_copiedOnlyWhenEqualToTheTimestamp() {
        for (earliest, latest) in [(UInt64(41_258_298_595_321), UInt64(41_258_298_595_321)),
                                   (7, 41_258_298_595_321), (41_258_298_595_321, 99_999_999_999_999_999), (0, 1)] {
            var event = TraceEvent(timestampNs: 41_258_298_595_321, side: .server, conn: 3, kind: .state, cause: "x")
            event.from = .established
            event.to = .closeWait
            event.earliestNs = earliest
            event.latestNs = latest
            var identities = IdentityFragments()
            var second = RFC3339Second()
            var known = PlainStrings()
            var writer = TraceBytes()
            JSONTraceRenderer.render(event, into: &writer, identities: &identities, second: &second, plain: &known)
            for line in [JSONTraceRenderer.render(event), writer.string] {
                #expect(line.contains(#""earliest_ns":\#(earliest),"latest_ns":\#(latest)}"#), "\(line)")
                let decoded = TraceEvent(jsonLine: Substring(line))
                #expect(decoded?.earliestNs == earliest && decoded?.latestNs == latest && decoded?.timestampNs == event.timestampNs)
            }
        }
    }

    /// `PlainStrings` copies a string unscanned only when it equals one that needed no escaping:
    /// through repeats, strings of one length filling and overflowing a set (more than its four
    /// ways), equal strings built at run time, strings that need escaping (never remembered),
    /// and seenAt appended to a cause, the writer's lines are the plain renderer's bytes.
    @Test func plainStrings_writeWhatTheScanWrites() {
        let sameLength = (0..<6).map { "cause number \($0) of one length" }        // one set, six strings
        let escaped = ["a \"quoted\" cause of one length!!", "tab\there", "line\nbreak", "back\\slash", "nul\u{0}", "del\u{7f}"]
        let built = String(repeating: "x", count: 3) + " built at run time"
        var causes: [(String, String?)] = []
        for round in 0..<3 {
            for text in sameLength + escaped + [built, "", "é unicode ü", String(round)] { causes.append((text, nil)) }
            causes.append(("peer's FIN arrived", "recv()=0: peer sent FIN"))
            causes.append(("peer's FIN arrived", "a \"quoted\" call"))
        }
        var known = PlainStrings(), identities = IdentityFragments(), second = RFC3339Second()
        for (index, (cause, seenAt)) in causes.enumerated() {
            let event = TraceEvent(timestampNs: UInt64(index), side: .server, conn: 1, kind: .state, from: .established,
                                   to: .closeWait, source: .tracepoint, cause: cause, seenAt: seenAt)
            var writer = TraceBytes()
            JSONTraceRenderer.render(event, into: &writer, identities: &identities, second: &second, plain: &known)
            #expect(writer.string == JSONTraceRenderer.render(event), "\(cause)")
            #expect(TraceEvent(jsonLine: Substring(writer.string))?.cause == event.cause)
        }
        // Same length, same first and last eight bytes (one fingerprint): told apart by comparing
        // them, so the one that needs escaping is never copied raw after the plain one.
        let plainTwin = "first8..x..last8!", escapedTwin = "first8..\"..last8!"
        #expect(PlainStrings.fingerprint(plainTwin) == PlainStrings.fingerprint(escapedTwin))
        var twins = TraceBytes()
        for _ in 0..<2 { known.appendEscaped(plainTwin, into: &twins); known.appendEscaped(escapedTwin, into: &twins) }
        #expect(twins.string == String(repeating: #"first8..x..last8!first8..\"..last8!"#, count: 2))
        // An escaped string is never copied raw, however often it comes.
        var out = TraceBytes()
        for _ in 0..<3 { known.appendEscaped("say \"hi\"", into: &out) }
        #expect(out.string == String(repeating: #"say \"hi\""#, count: 3))
    }

    /// The JSON members written as one literal are what a key and the quoted name write.
    @Test func jsonNameMembers_matchTheKeyAndName() {
        func written(_ name: StaticString, _ value: String) -> String {
            var out = TraceBytes()
            out.needsComma = true
            out.member(name, value)
            return out.string
        }
        for kind in TraceEvent.Kind.allCases { #expect(String(describing: kind.jsonEventMember) == written("event", kind.rawValue)) }
        for source in ObservationSource.allCases {
            #expect(String(describing: source.jsonSourceMember) == written("source", source.rawValue))
        }
        for state in TCPState.all {
            #expect(state.jsonMembers.map { String(describing: $0.from) } == written("from", state.name))
            #expect(state.jsonMembers.map { String(describing: $0.to) } == written("to", state.name))
        }
        #expect(TCPState.unknown(42).jsonMembers == nil)
        // The line's opening literals: the format version and two keys as the writers spell them.
        var opening = TraceBytes()
        opening.openObject()
        opening.member("v", UInt64(JSONTraceRenderer.formatVersion))
        opening.key("ts_ns")
        #expect(String(describing: JSONTraceRenderer.headOpening) == opening.string)
        var time = TraceBytes()
        time.needsComma = true
        time.key("time")
        #expect(String(describing: JSONTraceRenderer.timeKey) == time.string + "\"")
    }

    /// Integers two digits at a time, with and without zero padding, against `String(_:)`.
    @Test func integers_matchStringConversion() {
        let values: [UInt64] = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1_000, 12_345, 1_000_000, 490_737_165_166,
                                9_999_999_999_999_999_999, 10_000_000_000_000_000_000, UInt64(Int64.max), .max]
        for value in values {
            for digits in [1, 2, 6, 21] {
                var out = TraceBytes()
                out.append(value, minimumDigits: digits)
                let plain = String(value)
                #expect(out.string == String(repeating: "0", count: max(0, digits - plain.count)) + plain)
            }
        }
    }

    /// The writer's path copies each socket's repeated columns/members from `IdentityFragments`:
    /// every line must be the bytes the plain renderer writes, through a socket's first event,
    /// its repeats, a cookie or address learned later, an id sharing its slot (conn and
    /// conn + 64), the other side with the same id, a segment (the wire's columns), and
    /// identities too long to remember.
    @Test func identityFragments_writeWhatThePlainRendererWrites() {
        func event(_ conn: Int, side: TraceSide = .server, local: String? = "127.0.0.1:7007", peer: String? = "127.0.0.1:40000",
                   cookie: UInt64? = 42, kind: TraceEvent.Kind = .state, at ns: UInt64) -> TraceEvent {
            TraceEvent(timestampNs: ns, side: side, conn: conn, local: local, peer: peer, cookie: cookie, kind: kind,
                       from: kind == .state ? .synReceived : nil, to: kind == .state ? .established : nil,
                       source: kind == .state ? .tracepoint : nil, cause: "handshake complete")
        }
        var events = [event(3, local: nil, peer: nil, cookie: nil, at: 1), event(3, cookie: nil, at: 2), event(3, at: 3), event(3, at: 4),
                      event(67, at: 5), event(3, at: 6), event(3, side: .client, at: 7), event(3, peer: "[::1]:40001", at: 8),
                      event(3, kind: .warning, at: 9), event(4, local: "127.0.0.1:7\"07", at: 10)]
        var segment = event(3, kind: .segment, at: 11)
        segment.segmentID = 1
        events.append(segment)
        events.append(event(3, at: 12))
        // Longer than a slot holds (`IdentityFragments.maxBytes`): rendered every time, and a
        // short one remembered in the same slot afterwards.
        let long = "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535", longer = String(repeating: "x", count: 300)
        events += [event(5, local: long, peer: long, at: 13), event(5, local: long, peer: long, at: 14),
                   event(6, local: longer, peer: nil, at: 15), event(6, local: longer, peer: nil, at: 16),
                   event(5, at: 17), event(5, at: 18), event(5, local: long, peer: long, at: 19)]
        let text = TextTraceRenderer(baseNs: 0, color: false)
        var textCache = IdentityFragments(), jsonCache = IdentityFragments(), second = RFC3339Second(), known = PlainStrings()
        for e in events {
            var cached = TraceBytes(), plain = TraceBytes()
            text.render(e, into: &cached, identities: &textCache)
            text.render(e, into: &plain)
            #expect(cached.string == plain.string)
            cached = TraceBytes(); plain = TraceBytes()
            JSONTraceRenderer.render(e, into: &cached, identities: &jsonCache, second: &second, plain: &known)
            JSONTraceRenderer.render(e, into: &plain)
            #expect(cached.string == plain.string)
        }
    }

    /// The time column written in place is `seconds(ns)` padded to 10 columns and a space.
    @Test func text_timeColumn_matchesSecondsPadded() {
        for ns: UInt64 in [0, 999, 1_000, 412_000, 999_999_999, 1_000_000_000, 9_876_543_210, 123_456_789_012,
                           999_999_999_999, 1_234_567_890_123_456, .max] {
            var out = TraceBytes()
            TextTraceRenderer.appendTimeColumn(ns, into: &out)
            #expect(out.string == TextTraceRenderer.pad(TextTraceRenderer.seconds(ns), 10, left: true) + " ")
        }
    }

    /// The address columns: 21 wide each, right- then left-aligned, long IPv6 text unclipped.
    @Test func text_addressColumns() {
        let text = TextTraceRenderer(baseNs: 0, color: false)
        let short = TraceEvent(timestampNs: 0, side: .client, conn: 1, local: "127.0.0.1:5", peer: "127.0.0.1:7007",
                               kind: .info, cause: "x")
        let line = text.render(short)
        #expect(line.contains("          127.0.0.1:5 ⇄ 127.0.0.1:7007         "), "\(line)")
        let long = TraceEvent(timestampNs: 0, side: .client, conn: 1, local: "[fe80::1234:5678:9abc]:65535", peer: nil,
                              kind: .info, cause: "x")
        #expect(text.render(long).contains(" [fe80::1234:5678:9abc]:65535 ⇄ -                     "), "\(text.render(long))")
    }

    @Test func text_escapesPeerBytes() {
        var event = TraceEvent(timestampNs: 0, side: .client, conn: 1, kind: .data, cause: "received 4 bytes")
        event.bytes = [0x1b, 0x5d, 0x07, 0x41]
        let line = TextTraceRenderer(baseNs: 0, color: false).render(event)
        #expect(!line.contains("\u{1b}"))
        #expect(line.contains("\\x1b]\\x07A"))
    }

    @Test func text_colorsOnlyWhenAsked() {
        let event = TraceEvent(timestampNs: 5_000, side: .server, conn: 1, kind: .state, from: .listen, to: .synReceived,
                               source: .inferred, cause: "x")
        #expect(!TextTraceRenderer(baseNs: 0, color: false).render(event).contains("\u{1b}["))
        #expect(TextTraceRenderer(baseNs: 0, color: true).render(event).contains("\u{1b}["))
    }

    @Test func escaping_passesPrintableAsciiOnly() {
        #expect(ByteEscaping.escape(Array("hi\\there\r\n".utf8)) == "hi\\\\there\\r\\n")
        #expect(ByteEscaping.escape(Array("é".utf8)) == "\\xc3\\xa9")
    }

    /// Durations round to the nearest shown unit: TIME_WAIT measured 61.98 s reads `62 s`, not
    /// `61 s`; the unit is picked after rounding, so 999.7 ms is `1.0 s`.
    @Test func duration_roundsToNearest() {
        #expect(TextTraceRenderer.duration(61_980_000_000) == "62 s")
        #expect(TextTraceRenderer.duration(61_400_000_000) == "61 s")
        #expect(TextTraceRenderer.duration(1_960_000_000) == "2.0 s")
        #expect(TextTraceRenderer.duration(1_940_000_000) == "1.9 s")
        #expect(TextTraceRenderer.duration(9_960_000_000) == "10 s")
        #expect(TextTraceRenderer.duration(146_700_000) == "147 ms")
        #expect(TextTraceRenderer.duration(999_700_000) == "1.0 s")
        #expect(TextTraceRenderer.duration(1_600) == "2 µs")
        #expect(TextTraceRenderer.duration(999_600) == "1 ms")
        #expect(TextTraceRenderer.duration(0) == "0 µs")
    }

    @Test func ladder_putsSidesInColumnsInTimeOrder() {
        let events = [
            TraceEvent(timestampNs: 200, side: .server, conn: 1, kind: .state, from: .established, to: .closeWait, source: .tcpInfo, cause: "s"),
            TraceEvent(timestampNs: 100, side: .client, conn: 1, kind: .state, from: .established, to: .finWait1, source: .tcpInfo, cause: "c"),
        ]
        let lines = LadderRenderer(color: false).render(events)
        #expect(lines.count == 3)
        #expect(lines[1].contains("FIN_WAIT_1"))
        #expect(lines[2].contains("CLOSE_WAIT"))
        let clientColumn = lines[1].range(of: "FIN_WAIT_1")!.lowerBound
        let serverColumn = lines[2].range(of: "CLOSE_WAIT")!.lowerBound
        #expect(lines[1].distance(from: lines[1].startIndex, to: clientColumn)
                < lines[2].distance(from: lines[2].startIndex, to: serverColumn))
    }
}
