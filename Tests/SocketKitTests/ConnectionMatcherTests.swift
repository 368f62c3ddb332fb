import Testing
@testable import SocketKit
@testable import TCPTrace

/// `--merge`: pairing a client's connection with the server's by swapped addresses, the
/// socket cookie as identity, and what is left out.
@Suite struct ConnectionMatcherTests {
    static func event(_ ns: UInt64, _ side: TraceSide, pid: Int32, conn: Int, local: String?, peer: String?,
                      cookie: UInt64? = nil, to: TCPState = .established) -> TraceEvent {
        TraceEvent(timestampNs: ns, side: side, pid: pid, conn: conn, local: local, peer: peer, cookie: cookie,
                   kind: .state, to: to, source: .tcpInfo, cause: "t\(ns)")
    }

    static let server = "127.0.0.1:7007"
    /// A server trace: a listener, three connections (ports 40001-40003), a program note.
    static let serverTrace: [TraceEvent] = [
        TraceEvent(timestampNs: 1, side: .server, pid: 10, conn: 0, kind: .info, cause: "kernel trace off"),
        event(2, .server, pid: 10, conn: 0, local: server, peer: nil, cookie: 100, to: .listen),
        event(10, .server, pid: 10, conn: 1, local: server, peer: "127.0.0.1:40001", cookie: 101),
        event(20, .server, pid: 10, conn: 2, local: server, peer: "127.0.0.1:40002", cookie: 102),
        event(25, .server, pid: 10, conn: 2, local: server, peer: "127.0.0.1:40002", cookie: 102, to: .closeWait),
        event(30, .server, pid: 10, conn: 3, local: server, peer: "127.0.0.1:40003", cookie: 103),
    ]
    /// The client of port 40002: its first event knows only the peer.
    static let clientTrace: [TraceEvent] = [
        event(19, .client, pid: 20, conn: 1, local: nil, peer: server, cookie: 200, to: .synSent),
        event(21, .client, pid: 20, conn: 1, local: "127.0.0.1:40002", peer: server, cookie: 200),
    ]

    @Test func byDefault_onlyTheClientsConnectionAndItsServerSide() {
        let selection = ConnectionMatcher.select(Self.serverTrace + Self.clientTrace, matchedOnly: true)
        #expect(selection.pairs.count == 1)
        #expect(selection.pairs.first?.client.conn == 1 && selection.pairs.first?.server.conn == 2)
        #expect(Set(selection.events.map { "\($0.side.rawValue)#\($0.conn)" }) == ["client#1", "server#2"])
        #expect(selection.events.count == 4)
        #expect(selection.hidden.count == 3)
        #expect(selection.note?.contains("client #1 = server #2") == true, "\(selection.note ?? "")")
        #expect(selection.note?.contains("1 server listener, 2 server connections") == true, "\(selection.note ?? "")")
        #expect(selection.note?.contains("--merge-all") == true)
    }

    @Test func mergeAll_keepsEverything_andStillNamesThePair() {
        let all = Self.serverTrace + Self.clientTrace
        let selection = ConnectionMatcher.select(all, matchedOnly: false)
        #expect(selection.events.count == all.count)
        #expect(selection.pairs.count == 1)
        #expect(selection.note?.contains("client #1 = server #2") == true)
    }

    @Test func noPair_showsEverything_withANote() {
        let strangers = [Self.event(5, .client, pid: 30, conn: 1, local: "127.0.0.1:49999", peer: Self.server, cookie: 300)]
        let selection = ConnectionMatcher.select(Self.serverTrace + strangers, matchedOnly: true)
        #expect(selection.pairs.isEmpty)
        #expect(selection.events.count == Self.serverTrace.count + 1)
        #expect(selection.note?.hasPrefix("no client connection matches a server connection") == true, "\(selection.note ?? "")")
        let serverOnly = ConnectionMatcher.select(Self.serverTrace, matchedOnly: true)
        #expect(serverOnly.events.count == Self.serverTrace.count)
        #expect(serverOnly.note?.hasPrefix("only server connections") == true, "\(serverOnly.note ?? "")")
    }

    /// A 4-tuple used twice (the same client port in two runs): each client connection takes
    /// the server connection that began closest to it.
    @Test func reusedFourTuple_pairsByTime() {
        let port = "127.0.0.1:40009"
        let events = [
            Self.event(1_000, .server, pid: 10, conn: 1, local: Self.server, peer: port, cookie: 101),
            Self.event(9_000, .server, pid: 10, conn: 7, local: Self.server, peer: port, cookie: 107),
            Self.event(9_010, .client, pid: 21, conn: 1, local: port, peer: Self.server, cookie: 201),
            Self.event(990, .client, pid: 20, conn: 1, local: port, peer: Self.server, cookie: 200),
        ]
        let pairs = ConnectionMatcher.select(events, matchedOnly: true).pairs
        #expect(pairs.count == 2)
        let byClient = Dictionary(uniqueKeysWithValues: pairs.map { ($0.client.pid, $0.server.conn) })
        #expect(byClient == [20: 1, 21: 7])
    }

    /// The cookie is a socket's identity: the same file given twice is one connection, each
    /// event shown once; IPv6 addresses pair like IPv4 ones.
    @Test func sameFileTwice_isOneConnection_andIPv6Pairs() {
        let v6 = [
            Self.event(1, .server, pid: 10, conn: 4, local: "[::1]:7007", peer: "[::1]:50000", cookie: 104),
            Self.event(2, .client, pid: 20, conn: 1, local: "[::1]:50000", peer: "[::1]:7007", cookie: 204),
        ]
        let selection = ConnectionMatcher.select(v6 + v6, matchedOnly: true)
        #expect(selection.pairs.count == 1)
        #expect(selection.events.count == 2)
        #expect(selection.note == nil)
    }

    /// Without cookies (older traces), process and connection number identify a socket.
    @Test func withoutCookies_processAndConnectionNumber() {
        let events = [
            Self.event(1, .server, pid: 10, conn: 1, local: Self.server, peer: "127.0.0.1:40001"),
            Self.event(2, .server, pid: 11, conn: 1, local: Self.server, peer: "127.0.0.1:40002"),
            Self.event(3, .client, pid: 20, conn: 1, local: "127.0.0.1:40002", peer: Self.server),
        ]
        let selection = ConnectionMatcher.select(events, matchedOnly: true)
        #expect(selection.pairs.first?.server.pid == 11)
        #expect(selection.events.count == 2)
    }
}
