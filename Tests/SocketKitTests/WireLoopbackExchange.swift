import CSocketKit
import Glibc
import SocketKit
@testable import TCPTrace

/// A real loopback exchange for the capture tests: listen, connect, echo one message, half-close
/// both ways, and report the client's tcp_info segment counters before it closes.
struct LoopbackExchange {
    struct Failure: Error, CustomStringConvertible { var description: String }

    var family: Int32 = AF_INET
    var listener: Int32 = -1
    var port: UInt16 = 0

    /// tcpi_segs_out / tcpi_segs_in offsets in the kernel's struct tcp_info (Linux ≥ 4.2).
    static let segsOutOffset = MemoryLayout<CSocketKit_tcp_info>.offset(of: \.tcpi_segs_out) ?? 136
    static let segsInOffset = MemoryLayout<CSocketKit_tcp_info>.offset(of: \.tcpi_segs_in) ?? 140

    init(family: Int32) throws {
        self.family = family
        listener = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        try withAddress(port: 0) { address, length in
            guard bind(listener, address, length) == 0, listen(listener, 8) == 0 else { throw Failure(description: "bind/listen: errno \(errno)") }
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        port = withUnsafeBytes(of: &storage) { UInt16($0[2]) << 8 | UInt16($0[3]) }
    }

    func withAddress<R>(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) throws -> R {
        if family == AF_INET6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_addr = in6addr_loopback
            return try withUnsafePointer(to: &address) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return try withUnsafePointer(to: &address) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }

    /// Runs the exchange; returns the client's (segs_out, segs_in) after both FINs.
    func run(message: [UInt8] = Array("hello".utf8)) throws -> (segsOut: UInt32, segsIn: UInt32) {
        let client = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard client >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        defer { Glibc.close(client) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)      // every wait is bounded
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try withAddress(port: port) { address, length in
            guard connect(client, address, length) == 0 else { throw Failure(description: "connect: errno \(errno)") }
        }
        let server = accept(listener, nil, nil)
        guard server >= 0 else { throw Failure(description: "accept: errno \(errno)") }
        defer { Glibc.close(server) }
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        guard write(client, message, message.count) == message.count else { throw Failure(description: "write: errno \(errno)") }
        let got = read(server, &buffer, buffer.count)
        guard got == message.count else { throw Failure(description: "server read \(got)") }
        guard write(server, buffer, got) == got else { throw Failure(description: "echo: errno \(errno)") }
        guard read(client, &buffer, buffer.count) == message.count else { throw Failure(description: "client read") }
        shutdown(client, Int32(SHUT_WR))
        guard read(server, &buffer, buffer.count) == 0 else { throw Failure(description: "server expected EOF") }
        shutdown(server, Int32(SHUT_WR))
        guard read(client, &buffer, buffer.count) == 0 else { throw Failure(description: "client expected EOF") }
        usleep(20_000)                                     // let the last ACK leave before counting
        var info = [UInt8](repeating: 0, count: 280)
        var length = socklen_t(info.count)
        guard getsockopt(client, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0, Int(length) >= 144 else {
            throw Failure(description: "TCP_INFO: errno \(errno), length \(length)")
        }
        func u32(_ at: Int) -> UInt32 { info.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) } }
        return (u32(Self.segsOutOffset), u32(Self.segsInOffset))
    }

    func close() { Glibc.close(listener) }
}
