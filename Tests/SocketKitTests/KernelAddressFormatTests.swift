import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// The tracepoint decoder formats addresses itself; it must agree with inet_ntop exactly.
@Suite struct KernelAddressFormatTests {
    static func ntop(_ family: Int32, _ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func format(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { raw in
            StateChangeLayout.address(raw, TracepointField(offset: 0, size: bytes.count, isSigned: false))
        }
    }

    /// Expected texts written out by hand (RFC 5952: lowercase, the longest run of zero groups
    /// compressed, the first when two tie, a single zero group never), so the decoder is checked
    /// against something other than the C library it replaced.
    @Test(arguments: [
        ([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], "2001:db8::1"),
        ([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], "2001:db8::1:0:0:1"),
        ([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1], "2001:db8:0:1:1:1:1:1"),
        ([0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3], "1:0:0:2::3"),
        ([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], "fe80::1"),
        ([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], "ff02::2"),
        ([0x20, 0x01, 0x0d, 0xb8, 0, 0x0a, 0, 0x0b, 0, 0x0c, 0, 0x0d, 0, 0x0e, 0xab, 0xcd], "2001:db8:a:b:c:d:e:abcd"),
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "::"),
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], "::1"),
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1], "::ffff:192.0.2.1"),
        ([127, 0, 0, 1], "127.0.0.1"),
        ([0, 0, 0, 0], "0.0.0.0"),
        ([255, 255, 255, 255], "255.255.255.255"),
        ([10, 9, 100, 99], "10.9.100.99"),
    ] as [([UInt8], String)])
    func knownAddresses_formatAsWrittenByHand(bytes: [UInt8], expected: String) {
        #expect(Self.format(bytes) == expected)
    }

    @Test func ipv4_matchesInetNtop() {
        var generator = SystemRandomNumberGenerator()
        let fixed: [[UInt8]] = [[127, 0, 0, 1], [0, 0, 0, 0], [255, 255, 255, 255], [10, 9, 100, 99], [1, 22, 255, 0]]
        for bytes in fixed + (0..<500).map({ _ in (0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) } }) {
            #expect(Self.format(bytes) == Self.ntop(AF_INET, bytes))
        }
    }

    @Test func ipv4Mapped_andIPv6_matchInetNtop() {
        var generator = SystemRandomNumberGenerator()
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]
        #expect(Self.format(mapped) == "::ffff:127.0.0.1")
        #expect(Self.format(mapped) == Self.ntop(AF_INET6, mapped))
        var loopback = [UInt8](repeating: 0, count: 16)
        loopback[15] = 1
        #expect(Self.format(loopback) == "::1")
        for _ in 0..<300 {
            var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if Bool.random(using: &generator) { bytes.replaceSubrange(0..<12, with: mapped[0..<12]) }
            #expect(Self.format(bytes) == Self.ntop(AF_INET6, bytes))
        }
    }
}
