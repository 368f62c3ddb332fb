import SocketKit

/// RFC 9293's state diagram, used to check observed transitions and to fill in the states a
/// connection must have crossed between two observations.
public enum TCPStateMachine {
    /// What the endpoint itself did or saw, which decides between otherwise equal paths
    /// (ESTABLISHED → CLOSED is FIN_WAIT_1… after our FIN, CLOSE_WAIT… after the peer's).
    public struct Context: Sendable, Equatable {
        /// We sent our FIN (shutdown(SHUT_WR) or close()) before seeing the peer's.
        public var weClosedFirst = false
        /// The peer's FIN arrived before we sent ours.
        public var peerClosedFirst = false
        /// A reset was sent or received: every synchronized state may go straight to CLOSED.
        public var reset = false
        /// Linux closed the connection without a TIME_WAIT because its TIME_WAIT table was
        /// full (TCPTimeWaitOverflow rose): TIME_WAIT must not be inferred.
        public var timeWaitSkipped = false
        /// The four flags as bits 0–3 (the index of `paths`).
        var bits: Int {
            (weClosedFirst ? 1 : 0) | (peerClosedFirst ? 2 : 0) | (reset ? 4 : 0) | (timeWaitSkipped ? 8 : 0)
        }

        init(bits: Int) {
            self.init(weClosedFirst: bits & 1 != 0, peerClosedFirst: bits & 2 != 0, reset: bits & 4 != 0,
                      timeWaitSkipped: bits & 8 != 0)
        }

        public init(weClosedFirst: Bool = false, peerClosedFirst: Bool = false, reset: Bool = false,
                    timeWaitSkipped: Bool = false) {
            self.weClosedFirst = weClosedFirst
            self.peerClosedFirst = peerClosedFirst
            self.reset = reset
            self.timeWaitSkipped = timeWaitSkipped
        }
    }

    /// `targets` as sets: every transition allowed, by source state.
    static let allowed: [TCPState: Set<TCPState>] = Dictionary(uniqueKeysWithValues: TCPState.all.map { from in
        (from, Set(TCPState.all.filter { $0 != from && allows(from, $0) }))
    })

    /// The ordinary path each state takes next, in order of preference; no shortcuts
    /// (FIN_WAIT_1 → TIME_WAIT on a FIN+ACK is allowed but not assumed). A listener closes
    /// straight to CLOSED and a failed connect() leaves SYN_SENT straight for CLOSED.
    static let ordinary: [TCPState: [TCPState]] = [
        .closed: [.synSent, .listen],
        .listen: [.closed, .synReceived],
        .synSent: [.closed, .established, .synReceived],
        .synReceived: [.established],
        .established: [.finWait1, .closeWait],
        .finWait1: [.finWait2, .closing],
        .finWait2: [.timeWait, .closed],
        .closing: [.timeWait, .closed],
        .closeWait: [.lastAck],
        .lastAck: [.closed],
        .timeWait: [.closed],
    ]

    /// Whether RFC 9293 allows going from `from` to `to` directly.
    public static func allows(_ from: TCPState, _ to: TCPState) -> Bool {
        if from == to { return true }
        return targets(from) & (1 << bit(to)) != 0
    }

    /// Every transition RFC 9293 §3.3.2 allows, plus the Linux spellings of it: an fd whose
    /// connection has moved to its TIME_WAIT mini-socket reads CLOSED (FIN_WAIT_2/CLOSING →
    /// CLOSED), and a listener's child is created in SYN_RECEIVED.
    /// One bit per target state (`bit`), in a switch the compiler folds to constants: asked once
    /// per event, a lazily built global array was a lazy-initialization check and ~90
    /// instructions a call (callgrind, connect churn).
    private static func targets(_ from: TCPState) -> UInt32 {
        @inline(__always) func to(_ state: TCPState) -> UInt32 { 1 << bit(state) }
        switch from {
        case .closed: return to(.listen) | to(.synSent)
        case .listen: return to(.synReceived) | to(.synSent) | to(.closed)
        case .synSent: return to(.synReceived) | to(.established) | to(.closed)
        case .synReceived: return to(.established) | to(.finWait1) | to(.closed) | to(.listen)
        case .established: return to(.finWait1) | to(.closeWait) | to(.closed)
        case .finWait1: return to(.finWait2) | to(.closing) | to(.timeWait) | to(.closed)
        case .finWait2: return to(.timeWait) | to(.closed)
        case .closing: return to(.timeWait) | to(.closed)
        case .closeWait: return to(.lastAck) | to(.closed)
        case .lastAck: return to(.closed)
        case .timeWait: return to(.closed)
        case .unknown: return 0
        }
    }

    /// 0...10 for the RFC's states, 11 for any unknown one (which allows nothing).
    private static func bit(_ state: TCPState) -> Int {
        state.caseCode < 11 ? Int(state.caseCode) : 11
    }

    /// The states strictly between `from` and `to` on the ordinary path that fits `context`;
    /// `[]` if `to` follows directly, nil if the RFC gives no path (the caller flags it).
    public static func statesBetween(_ from: TCPState, _ to: TCPState, context: Context) -> [TCPState]? {
        if from == to { return [] }
        if case .unknown = from { return search(from, to, context: context) }
        if case .unknown = to { return search(from, to, context: context) }
        return paths[(bit(from) * 11 + bit(to)) * 16 + context.bits]
    }

    /// Every answer of `search`, for the 11 RFC states and the 16 contexts, computed once (a
    /// few milliseconds): the search with its dictionaries ran on every multi-step inference,
    /// 15% of an unprivileged traced server's instructions under connect churn (callgrind).
    private static let paths: [[TCPState]?] = {
        let states: [TCPState] = [.closed, .listen, .synSent, .synReceived, .established, .finWait1, .finWait2,
                                  .closeWait, .closing, .lastAck, .timeWait]
        var table = [[TCPState]?](repeating: nil, count: 11 * 11 * 16)
        for from in states {
            for to in states {
                for bits in 0..<16 {
                    table[(bit(from) * 11 + bit(to)) * 16 + bits] = from == to ? [] : search(from, to, context: Context(bits: bits))
                }
            }
        }
        return table
    }()

    private static func search(_ from: TCPState, _ to: TCPState, context: Context) -> [TCPState]? {
        if context.reset, to == .closed, allows(from, to) { return [] }
        // Most transitions are one ordinary step (measured: the search's allocations were ~6%
        // of the traced server's CPU under connect churn): answer those without searching.
        if let next = ordinary[from], next.contains(to), fits(from, to, context) { return [] }
        // Breadth-first over ordinary edges filtered by context; neighbours in preference order
        // make the result deterministic.
        // Arrays indexed by `bit`, not a Dictionary and a Set: the table is built at start-up.
        var previous = [TCPState?](repeating: nil, count: 12)
        var seen = [Bool](repeating: false, count: 12)
        seen[bit(from)] = true
        var queue: [TCPState] = [from]
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            // A connection never passes through CLOSED to reopen: it is only a start or an end.
            if state == .closed && state != from { continue }
            for next in ordinary[state] ?? [] where fits(state, next, context) && !seen[bit(next)] {
                previous[bit(next)] = state
                if next == to {
                    var path: [TCPState] = []
                    var cursor: TCPState? = state
                    while let step = cursor, step != from {
                        path.append(step)
                        cursor = previous[bit(step)]
                    }
                    return path.reversed()
                }
                seen[bit(next)] = true
                queue.append(next)
            }
        }
        return allows(from, to) ? [] : nil
    }

    private static func fits(_ from: TCPState, _ to: TCPState, _ context: Context) -> Bool {
        switch (from, to) {
        case (.established, .finWait1): return !context.peerClosedFirst
        case (.established, .closeWait): return !context.weClosedFirst
        case (_, .timeWait): return !context.timeWaitSkipped
        // Linux's shortcut when its TIME_WAIT table is full; never assumed otherwise.
        case (.finWait2, .closed), (.closing, .closed): return context.timeWaitSkipped
        default: return true
        }
    }
}
