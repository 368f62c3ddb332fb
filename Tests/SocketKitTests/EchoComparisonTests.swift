import Testing
@testable import TCPTrace
@testable import EchoKit

/// The client's verdict from what went out and what came back.
@Suite struct EchoComparisonTests {
    func compare(_ sent: String, _ received: [String]) -> EchoComparison {
        var comparison = EchoComparison()
        comparison.noteSent(Array(sent.utf8))
        for chunk in received { comparison.noteReceived(Array(chunk.utf8)) }
        return comparison
    }

    @Test func identicalEcho_inChunks_isEchoed() {
        let c = compare("hello\n", ["he", "llo\n"])
        #expect(c.verdict(expectEcho: true) == ExchangeVerdict(outcome: .echoed, sent: 6, received: 6, firstDifference: nil))
        #expect(c.describe(c.verdict(expectEcho: true)) == "echo matched: sent 6 bytes, received 6 identical")
    }

    @Test func greeting_isNotAnEchoServer_atByte0() {
        let c = compare("hello\n", ["Hello from server"])
        let v = c.verdict(expectEcho: true)
        #expect(v == ExchangeVerdict(outcome: .notEcho, sent: 6, received: 17, firstDifference: 0))
        #expect(c.describe(v).contains("first difference at byte 0: the peer is not an echo server"))
    }

    @Test func differenceInTheMiddle_isLocated() {
        let c = compare("hello world\n", ["hello", " wOrld\n"])
        #expect(c.verdict(expectEcho: true).firstDifference == 7)
    }

    @Test func prefix_isShortEcho_extra_isExtraBytes() {
        #expect(compare("hello\n", ["hel"]).verdict(expectEcho: true).outcome == .shortEcho)
        #expect(compare("hello\n", []).verdict(expectEcho: true) == ExchangeVerdict(outcome: .shortEcho, sent: 6, received: 0, firstDifference: 0))
        #expect(compare("hi\n", ["hi\n", "more"]).verdict(expectEcho: true) == ExchangeVerdict(outcome: .extraBytes, sent: 3, received: 7, firstDifference: 3))
    }

    @Test func shownBytes_areEscaped_andBounded() {
        var c = EchoComparison()
        c.noteSent([0x41])
        c.noteReceived([0x1b, 0x5b, 0x32, 0x4a, 0x00] + [UInt8](repeating: 0x7a, count: 100))
        let text = c.describe(c.verdict(expectEcho: true))
        #expect(text.contains("(\"\\x1b[2J\\x00zzz"))
        #expect(text.contains("…\")"))
        #expect(!text.utf8.contains(0x1b))
    }

    @Test func expectAny_reportsWhatCameBack() {
        let c = compare("GET /\n", ["HTTP/1.0 200 OK"])
        #expect(c.verdict(expectEcho: false).outcome == .received)
        #expect(c.describe(c.verdict(expectEcho: false)) == "sent 6 bytes, received 15 (\"HTTP/1.0 200 OK\"); the peer closed cleanly")
    }

    @Test func escapeKeepingLines_keepsNewlinesOnly() {
        #expect(ByteEscaping.escapeKeepingLines(Array("a\r\n\u{1b}b\n".utf8)) == "a\\r\n\\x1bb\n")
    }
}
