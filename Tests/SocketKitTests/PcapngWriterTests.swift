import Glibc
import Testing
import TestSupport
import SocketKit
@testable import TCPTrace

@Suite struct PcapngWriterTests {
    @Test func blocks_areFourByteAligned_andCarryTheirLengthTwice() {
        let packet = PcapngWriter.enhancedPacket(frame: [1, 2, 3], originalLength: 3, wallNs: 1, comments: ["x"])
        #expect(packet.count % 4 == 0)
        #expect(Array(packet[4..<8]) == Array(packet[(packet.count - 4)...]))
        let header = PcapngWriter.sectionHeader(comment: nil)
        #expect(Array(header[8..<12]) == [0x4D, 0x3C, 0x2B, 0x1A])
    }

    /// Read back by tools nobody here wrote: tcpdump for the packets, tshark for the comments.
    @Test(.enabled(if: Capabilities.tool("tcpdump") != nil, "needs tcpdump (apt-get install tcpdump)"))
    func file_readsBackInTcpdumpAndTshark() throws {
        let path = "/tmp/wire-pcapng-test-\(getpid()).pcapng"
        defer { unlink(path) }
        let writer = try PcapngWriter(path: path, link: .ethernet, interfaceName: "lo", snapLength: 262_144,
                                      sectionComment: "test section")
        let syn = FrameBuilder(seq: 1000, flags: .syn, tcpOptions: linuxSYNOptions).frame()
        let synAck = FrameBuilder(sourcePort: 7007, destinationPort: 40000, seq: 5000, ack: 1001, flags: [.syn, .ack], tcpOptions: linuxSYNOptions).frame()
        let base: Int64 = 1_700_000_000_123_456_789
        try writer.write(frame: syn, originalLength: syn.count, wallNs: base, comments: ["server #1 LISTEN: SYN received"])
        try writer.write(frame: synAck, originalLength: synAck.count, wallNs: base + 1_001,
                         comments: ["client #1 SYN_SENT → ESTABLISHED", "second comment"])
        try writer.close()

        let tcpdump = try #require(Capabilities.tool("tcpdump"))
        let dump = try ChildProcess(tcpdump, ["-nn", "-tt", "--nano", "-r", path])
        #expect(dump.wait(timeout: 30) == 0, "\(dump.stderrText)")
        let lines = dump.stdoutText.split(separator: "\n")
        #expect(lines.count == 2, "\(dump.stdoutText)")
        #expect(lines.first?.contains("1700000000.123456789") == true, "\(dump.stdoutText)")
        #expect(lines.first?.contains("127.0.0.1.40000 > 127.0.0.1.7007: Flags [S], seq 1000") == true, "\(dump.stdoutText)")
        #expect(lines.last?.contains("Flags [S.], seq 5000, ack 1001") == true, "\(dump.stdoutText)")

        // The comments need tshark (tcpdump does not print them); without it tcpdump checked the rest.
        guard let tshark = Capabilities.tool("tshark") else { return }
        let fields = try ChildProcess(tshark, ["-r", path, "-T", "fields", "-e", "frame.comment"])
        #expect(fields.wait(timeout: 30) == 0, "\(fields.stderrText)")
        let comments = fields.stdoutText.split(separator: "\n").map(String.init)
        #expect(comments.count == 2, "\(fields.stdoutText)")
        #expect(comments.first == "server #1 LISTEN: SYN received")
        #expect(comments.last?.contains("client #1 SYN_SENT → ESTABLISHED") == true)
        #expect(comments.last?.contains("second comment") == true)
    }
}
