import SocketKit

/// `--merge`: which connections in a set of traces are one TCP connection seen from both ends.
///
/// A server's trace holds every connection it handled (and its listeners); a client's trace
/// holds one. Merging them whole buries the client's connection among the others, so the
/// ladder shows the pairs: a client connection and a server connection are the same TCP
/// connection when one's local address is the other's peer and the other way round.
public enum ConnectionMatcher {
    /// One socket in the traces: its events and addresses.
    public struct Connection: Sendable {
        public let side: TraceSide
        public let pid: Int32
        public let conn: Int
        public let cookie: UInt64?
        /// The last addresses its events named (the first client events know only the peer).
        public let local: String?
        public let peer: String?
        /// Its first event (CLOCK_MONOTONIC, one clock for every process of a host).
        public let firstNs: UInt64
        public var label: String { "\(side.rawValue) #\(conn)" }
    }

    /// What `select` kept and how it got there.
    public struct Selection: Sendable {
        public var events: [TraceEvent]
        /// Client/server pairs found (client first).
        public var pairs: [(client: Connection, server: Connection)]
        /// Connections left out (only in `matchedOnly` mode with at least one pair).
        public var hidden: [Connection]
        /// One line for the reader: what is shown and why; nil when every connection is paired.
        public var note: String?
    }

    /// Identity of a socket in the traces. The socket cookie, where an event carries one, is
    /// unique per socket for the host's uptime, so the same socket found in two files (one
    /// file given twice, a server trace and a copy of it) is one connection; without a cookie,
    /// the process and its connection number.
    enum Key: Hashable {
        case cookie(TraceSide, UInt64)
        case process(TraceSide, Int32, Int)
        /// A note about the whole program (`kernel trace on`, the server's summary): no
        /// address, no cookie. Left out with the unpaired connections: a server's first note
        /// can be hours before the connection and would stretch the time axis.
        case note(TraceSide, Int32)
        /// A captured segment (`--wire`): kept with the connection its addresses name.
        case segment
    }

    static func isProgramNote(_ e: TraceEvent) -> Bool { e.local == nil && e.peer == nil && e.cookie == nil }

    /// The connections in `events`, in order of first appearance, with each event's key.
    static func connections(_ events: [TraceEvent]) -> (list: [Key: Connection], order: [Key], keys: [Key]) {
        var cookies: [Key: UInt64] = [:]
        for e in events {
            if let cookie = e.cookie { cookies[.process(e.side, e.pid, e.conn)] = cookie }
        }
        func key(_ e: TraceEvent) -> Key {
            if e.kind == .segment { return .segment }
            if isProgramNote(e) { return .note(e.side, e.pid) }
            return cookies[.process(e.side, e.pid, e.conn)].map { .cookie(e.side, $0) } ?? .process(e.side, e.pid, e.conn)
        }
        var list: [Key: Connection] = [:]
        var order: [Key] = []
        var keys: [Key] = []
        for e in events {
            let k = key(e)
            keys.append(k)
            if case .note = k { continue }
            if case .segment = k { continue }
            if let old = list[k] {
                list[k] = Connection(side: old.side, pid: old.pid, conn: old.conn, cookie: old.cookie,
                                     local: e.local ?? old.local, peer: e.peer ?? old.peer,
                                     firstNs: min(old.firstNs, e.timestampNs))
            } else {
                order.append(k)
                list[k] = Connection(side: e.side, pid: e.pid, conn: e.conn, cookie: cookies[.process(e.side, e.pid, e.conn)],
                                     local: e.local, peer: e.peer, firstNs: e.timestampNs)
            }
        }
        return (list, order, keys)
    }

    /// Pairs client and server connections by swapped 4-tuple. A 4-tuple can recur (a port
    /// reused after TIME_WAIT, traces of several runs): each client connection takes the
    /// unpaired server connection that began closest in time.
    ///
    /// - Parameter matchedOnly: keep only paired connections (when any pair exists);
    ///   false keeps everything (`--merge-all`).
    public static func select(_ events: [TraceEvent], matchedOnly: Bool) -> Selection {
        // The same event read twice (one file given twice) is shown once.
        var unique: [TraceEvent] = []
        var seen = Set<EventIdentity>()
        for e in events where seen.insert(EventIdentity(e)).inserted { unique.append(e) }
        let (list, order, keys) = connections(unique)
        var serverByTuple: [String: [Key]] = [:]
        for k in order {
            guard let c = list[k], c.side == .server, let local = c.local, let peer = c.peer else { continue }
            serverByTuple[local + " " + peer, default: []].append(k)
        }
        var paired: [Key] = []
        var pairs: [(client: Connection, server: Connection)] = []
        for k in order {
            guard let c = list[k], c.side == .client, let local = c.local, let peer = c.peer,
                  let candidates = serverByTuple[peer + " " + local], !candidates.isEmpty else { continue }
            let distance = { (s: Key) -> UInt64 in
                let start = list[s]?.firstNs ?? 0
                return start > c.firstNs ? start - c.firstNs : c.firstNs - start
            }
            guard let best = candidates.filter({ !paired.contains($0) }).min(by: { distance($0) < distance($1) }),
                  let server = list[best] else { continue }
            paired += [k, best]
            pairs.append((c, server))
        }
        let connectionCount = order.count
        if pairs.isEmpty {
            let sides = Set(list.values.map(\.side))
            let note = sides.count < 2
                ? "only \(sides.first?.rawValue ?? "no") connections in these traces: nothing to pair, showing all \(connectionCount)"
                : "no client connection matches a server connection (local and peer addresses swapped): showing all \(connectionCount)"
            return Selection(events: unique, pairs: [], hidden: [], note: note)
        }
        let hiddenKeys = order.filter { !paired.contains($0) }
        let hidden = hiddenKeys.compactMap { list[$0] }
        let pairText = pairs.map { "\($0.client.label) = \($0.server.label)" }.joined(separator: ", ")
        guard matchedOnly else {
            let note = hidden.isEmpty ? nil
                : "\(pairs.count) connection\(pairs.count == 1 ? "" : "s") seen from both ends (\(pairText)); "
                + "\(hidden.count) more seen from one end only (\(describe(hidden)))"
            return Selection(events: unique, pairs: pairs, hidden: [], note: note)
        }
        let keep = Set(paired)
        // Segments go with the pair whose addresses they carry, in either direction.
        let tuples = Set(pairs.compactMap { pair in pair.client.local.flatMap { l in pair.client.peer.map { l + " " + $0 } } }
            + pairs.compactMap { pair in pair.server.local.flatMap { l in pair.server.peer.map { l + " " + $0 } } })
        let kept = zip(unique, keys).filter { event, key in
            if case .segment = key { return tuples.contains((event.local ?? "") + " " + (event.peer ?? "")) }
            return keep.contains(key)
        }.map(\.0)
        let note = hidden.isEmpty ? nil
            : "showing the \(pairs.count) connection\(pairs.count == 1 ? "" : "s") seen from both ends (\(pairText)); "
            + "\(hidden.count) more seen from one end only (\(describe(hidden))) hidden: --merge-all shows them"
        return Selection(events: kept, pairs: pairs, hidden: hidden, note: note)
    }

    /// `3 server connections, 2 listeners`.
    static func describe(_ connections: [Connection]) -> String {
        var counts: [(String, Int)] = []
        func add(_ name: String) {
            if let i = counts.firstIndex(where: { $0.0 == name }) { counts[i].1 += 1 } else { counts.append((name, 1)) }
        }
        for c in connections {
            if c.peer == nil && c.side == .server { add("server listener") } else { add("\(c.side.rawValue) connection") }
        }
        return counts.map { "\($0.1) \($0.0)\($0.1 == 1 ? "" : "s")" }.joined(separator: ", ")
    }

    /// What makes two decoded events the same line of a trace.
    struct EventIdentity: Hashable {
        let ts: UInt64, side: TraceSide, pid: Int32, conn: Int, kind: TraceEvent.Kind, cause: String, to: TCPState?
        init(_ e: TraceEvent) {
            ts = e.timestampNs; side = e.side; pid = e.pid; conn = e.conn; kind = e.kind; cause = e.cause; to = e.to
        }
    }
}
