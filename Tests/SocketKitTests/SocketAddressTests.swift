import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct SocketAddressTests {
    @Test func parsesAndPrintsIPv4() throws {
        let a = try #require(SocketAddress(parsing: "127.0.0.1:7007"))
        #expect(a.description == "127.0.0.1:7007")
        #expect(a.port == 7007)
        #expect(a.family == AF_INET)
        #expect(a.isLoopback)
    }

    @Test func parsesAndPrintsIPv6WithBrackets() throws {
        let a = try #require(SocketAddress(parsing: "[::1]:7007"))
        #expect(a.description == "[::1]:7007")
        #expect(a.host == "::1")
        #expect(a.family == AF_INET6)
        #expect(SocketAddress(parsing: "::1:7007") == nil)   // ambiguous without brackets
    }

    /// accept4's peer address and a specific listener's local address stand in for
    /// getpeername/getsockname: they must say what those calls say, for a listener bound to
    /// one address (known) and to the wildcard (asked), IPv4 and IPv6.
    @Test(arguments: ["127.0.0.1", "0.0.0.0", "::1", "::"])
    func acceptedSocketsKnowTheirAddresses(host: String) throws {
        let address = try #require(SocketAddress(numericHost: host, port: 0))
        #expect(address.isWildcard == (host == "0.0.0.0" || host == "::"))
        let listener = try Socket.listening(on: address)
        defer { try? listener.close() }
        let bound = try listener.localAddress()
        let loopback = try #require(SocketAddress(numericHost: address.family == AF_INET ? "127.0.0.1" : "::1", port: bound.port))
        let client = try Socket(family: address.family, nonBlocking: false)
        defer { try? client.close() }
        _ = try client.connect(to: loopback)
        var accepted: Socket?
        for _ in 0..<200 where accepted == nil {   // bounded: 2 s
            if case .processed(let socket) = try listener.accept() { accepted = socket } else { usleep(10_000) }
        }
        let socket = try #require(accepted, "HUNG: accept() found no connection within 2 s")
        defer { try? socket.close() }
        #expect(try socket.peerAddress() == client.localAddress())
        #expect(try socket.localAddress() == client.peerAddress())
        #expect(try socket.localAddress().description == loopback.description)
    }

    @Test func rejectsGarbage() {
        #expect(SocketAddress(parsing: "localhost:80") == nil)
        #expect(SocketAddress(parsing: "127.0.0.1:99999") == nil)
        #expect(SocketAddress(parsing: "1.2.3.4") == nil)
        #expect(SocketAddress(numericHost: "256.1.1.1", port: 1) == nil)
    }

    @Test func resolvesLocalhostAndLiterals() throws {
        let literal = try HostResolver.resolve("::1", port: 9)
        #expect(literal.map(\.description) == ["[::1]:9"])
        let local = try HostResolver.resolve("localhost", port: 9)
        #expect(local.allSatisfy { $0.isLoopback })
    }

    @Test func unknownHost_throwsResolutionError() {
        #expect(throws: ResolutionError.self) { try HostResolver.resolve("no-such-host.invalid", port: 1) }
    }

    @Test func boundSocket_reportsItsAddress() throws {
        let listener = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        defer { try? listener.close() }
        let local = try listener.localAddress()
        #expect(local.host == "127.0.0.1")
        #expect(local.port != 0)
    }
}
