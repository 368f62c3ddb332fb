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
