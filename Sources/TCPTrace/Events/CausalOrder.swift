import SocketKit

/// Orders both sides of a connection so that no effect comes before its cause.
///
/// A state read with tcp_info is stamped when it was *read*, after the call returned; on
/// loopback the peer has often reacted by then, so the server's CLOSE_WAIT can carry an earlier
/// stamp than the client's FIN_WAIT_1 that caused it. Each state event carries the interval it
/// happened in (`earliestNs`...`latestNs`: the reading before, the reading that showed it); any
/// stamp inside it is true. Where the raw stamps contradict RFC 9293's order across the two
/// sides, the cause is moved back (or the effect forward) *within its interval*, and the event
/// says so in its cause. Nothing is reordered silently, and a contradiction no interval allows
/// is left as read and counted.
public enum CausalOrder {
    /// One broken rule: `cause` (an event index) must come before `effect`.
    public struct Inversion: Sendable, CustomStringConvertible {
        public var cause: TraceEvent
        public var effect: TraceEvent
        public var description: String {
            "\(effect.side.rawValue) #\(effect.conn) \(effect.to?.name ?? "?") at \(effect.timestampNs) before its cause "
                + "\(cause.side.rawValue) #\(cause.conn) \(cause.to?.name ?? "?") at \(cause.timestampNs)"
        }
    }

    /// A connection's events, by side, process and number.
    struct Key: Hashable { let side: TraceSide, pid: Int32, conn: Int }

    /// One rule as indices into the events: `cause` before `effect` (`why`: what the cause sent).
    struct Rule {
        var cause: Int, effect: Int, why: String
        /// A segment and the state it caused may share a stamp; two states may not.
        var strict = true
    }

    /// The rules for every client socket and the server socket with the swapped 4-tuple, both
    /// ways; and each state after the captured segment that caused it.
    static func constraints(_ events: [TraceEvent]) -> [Rule] {
        var chains: [Key: [Int]] = [:]
        var addresses: [Key: (local: String, peer: String)] = [:]
        for (i, e) in events.enumerated() where e.kind == .state {
            let key = Key(side: e.side, pid: e.pid, conn: e.conn)
            chains[key, default: []].append(i)
            if let local = e.local, let peer = e.peer { addresses[key] = (local, peer) }
        }
        var result: [Rule] = []
        func start(_ key: Key) -> UInt64 { chains[key]?.first.map { events[$0].timestampNs } ?? 0 }
        for (clientKey, client) in addresses where clientKey.side == .client {
            // The server socket with the swapped 4-tuple whose first state is closest in time.
            let candidates = addresses.filter { $0.key.side == .server && $0.value.local == client.peer && $0.value.peer == client.local }
            guard let serverKey = candidates.keys.min(by: {
                start($0).distance(to: start(clientKey)).magnitude < start($1).distance(to: start(clientKey)).magnitude
            }), let c = chains[clientKey], let s = chains[serverKey] else { continue }
            result += rules(a: c, b: s, events) + rules(a: s, b: c, events)
        }
        var segments: [Int: Int] = [:]
        for (i, e) in events.enumerated() where e.kind == .segment { if let id = e.wire?.id { segments[id] = i } }
        for (i, e) in events.enumerated() where e.kind == .state {
            if let id = e.segmentID, let s = segments[id] { result.append(Rule(cause: s, effect: i, why: "segment #\(id)", strict: false)) }
        }
        return result
    }

    /// RFC 9293 §3.10 in a few lines: who must have sent what before the other could react.
    static func rules(a: [Int], b: [Int], _ events: [TraceEvent]) -> [Rule] {
        func first(_ chain: [Int], _ match: (TraceEvent) -> Bool) -> Int? { chain.first { match(events[$0]) } }
        func to(_ states: Set<TCPState>) -> (TraceEvent) -> Bool { { $0.to.map(states.contains) ?? false } }
        var out: [Rule] = []
        func rule(_ cause: Int?, _ effect: Int?, _ why: String) {
            if let cause, let effect { out.append(Rule(cause: cause, effect: effect, why: why)) }
        }
        // Our SYN: the peer's SYN_RECEIVED.
        rule(first(a, to([.synSent])), first(b, to([.synReceived])), "SYN")
        // Our SYN+ACK (sent on entering SYN_RECEIVED): the peer's ESTABLISHED.
        rule(first(a, to([.synReceived])), first(b, to([.established])), "SYN+ACK")
        // Our handshake ACK (sent on SYN_SENT → ESTABLISHED): the peer's SYN_RECEIVED → ESTABLISHED.
        rule(first(a) { $0.from == .synSent && $0.to == .established },
             first(b) { $0.from == .synReceived && $0.to == .established }, "handshake ACK")
        // Our FIN (FIN_WAIT_1 or LAST_ACK): the peer's CLOSE_WAIT, CLOSING or TIME_WAIT.
        let ourFIN = first(a, to([.finWait1, .lastAck]))
        let theirFINIn = first(b, to([.closeWait, .closing, .timeWait]))
        rule(ourFIN, theirFINIn, "FIN")
        // The peer's ACK of our FIN, sent when our FIN arrived: our FIN_WAIT_2, LAST_ACK → CLOSED,
        // CLOSING → TIME_WAIT.
        if ourFIN != nil {
            rule(theirFINIn, first(a) {
                $0.to == .finWait2 || ($0.from == .lastAck && $0.to == .closed) || ($0.from == .closing && $0.to == .timeWait)
            }, "ACK of the FIN")
        }
        return out
    }

    /// The rules `events` break, as stamped.
    public static func inversions(_ events: [TraceEvent]) -> [Inversion] {
        constraints(events).compactMap { rule in
            let cause = events[rule.cause], effect = events[rule.effect]
            let tie = effect.timestampNs == cause.timestampNs && (rule.strict || rule.effect < rule.cause)
            return effect.timestampNs < cause.timestampNs || tie ? Inversion(cause: cause, effect: effect) : nil
        }
    }

    /// `events` with stamps that obey the rules, each moved stamp inside its interval and
    /// explained in its cause. Returned in time order (ties in their original order).
    public static func apply(_ events: [TraceEvent]) -> [TraceEvent] {
        // Time order first, so each side's chain is in the order it happened.
        var out = events.enumerated().sorted { ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset) }.map(\.element)
        let rules = constraints(out)
        guard !rules.isEmpty else { return out }
        let read = out.map(\.timestampNs)
        var chainOf: [Int: [Int]] = [:]
        var chains: [Key: [Int]] = [:]
        for (i, e) in out.enumerated() where e.kind == .state { chains[Key(side: e.side, pid: e.pid, conn: e.conn), default: []].append(i) }
        for chain in chains.values { for i in chain { chainOf[i] = chain } }
        var reasons: [Int: String] = [:]
        func label(_ e: TraceEvent) -> String { "\(e.side.rawValue) #\(e.conn) \(e.to?.name ?? "?")" }
        // A segment's capture time is exact; a state without a known start may go back freely.
        func floor(_ i: Int) -> UInt64 { out[i].kind == .state ? out[i].earliestNs ?? 0 : out[i].timestampNs }
        func ceiling(_ i: Int) -> UInt64 { max(out[i].latestNs ?? 0, read[i]) }
        // Moves `i` to `t` and keeps its own side in order (earlier ones never after it).
        func move(_ i: Int, to t: UInt64, _ why: String) {
            out[i].timestampNs = t
            reasons[i] = why
            guard let chain = chainOf[i], let at = chain.firstIndex(of: i) else { return }
            for j in chain[..<at].reversed() where out[j].timestampNs > t {
                out[j].timestampNs = t
                reasons[j] = reasons[j] ?? "to stay before \(label(out[i])) on its own side"
            }
            for j in chain[(at + 1)...] where out[j].timestampNs < t {
                out[j].timestampNs = t
                reasons[j] = reasons[j] ?? "to stay after \(label(out[i])) on its own side"
            }
        }
        // A handful of passes settles every chain seen (each pass fixes what the last moved).
        for _ in 0..<8 {
            var changed = false
            for rule in rules {
                let c = rule.cause, e = rule.effect
                let effectTs = out[e].timestampNs, causeTs = out[c].timestampNs
                guard rule.strict ? effectTs <= causeTs : effectTs < causeTs else { continue }
                let gap: UInt64 = rule.strict ? 1 : 0
                if !rule.strict {
                    guard causeTs <= ceiling(e) else { continue }   // contradiction: left as read
                    move(e, to: causeTs, "at \(rule.why), which caused it")
                } else if effectTs > 0, effectTs - 1 >= floor(c) {
                    move(c, to: effectTs - 1, "before \(label(out[e])), which its \(rule.why) caused")
                } else if causeTs + gap <= ceiling(e) {
                    move(e, to: causeTs + gap, "after \(label(out[c])), whose \(rule.why) caused it")
                } else {
                    let t = max(floor(c), floor(e))
                    guard t <= ceiling(c), t + 1 <= ceiling(e) else { continue }   // contradiction: left as read
                    move(c, to: t, "before \(label(out[e])), which \(rule.why) caused")
                    move(e, to: t + 1, "after \(label(out[c]))")
                }
                changed = true
            }
            if !changed { break }
        }
        for (i, why) in reasons where out[i].timestampNs != read[i] {
            let later = out[i].timestampNs > read[i]
            let shift = later ? out[i].timestampNs - read[i] : read[i] - out[i].timestampNs
            let amount = shift < 1_000 ? "\(shift) ns" : TextTraceRenderer.duration(shift)
            out[i].cause += " (stamped \(amount) \(later ? "after" : "before") its reading, inside its interval: \(why))"
        }
        return out.enumerated().sorted { ($0.element.timestampNs, $0.offset) < ($1.element.timestampNs, $1.offset) }.map(\.element)
    }
}
