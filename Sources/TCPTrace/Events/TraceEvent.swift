import Glibc
import SocketKit

/// How a state in the trace was obtained. Every event says it.
public enum ObservationSource: String, Sendable, Codable, CaseIterable {
    /// Read from the socket's own fd with getsockopt(TCP_INFO).
    case tcpInfo = "tcp_info"
    /// Read from the kernel's socket table with inet_diag (after close(), TIME_WAIT...).
    case sockDiag = "sock_diag"
    /// Reported by the kernel tracepoint sock:inet_sock_set_state (root only), with its timestamp.
    case tracepoint
    /// Not seen: RFC 9293 says the connection must have crossed it between two observations.
    case inferred
}

/// Which program wrote an event.
public enum TraceSide: String, Sendable, Codable, CaseIterable {
    case server, client
}

/// One line of the trace: a state change, or a warning/error/syscall/data note about a socket.
public struct TraceEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case state, warning, error, syscall, data, info
        /// A TCP segment captured on the wire (`--wire`): `wire` holds it.
        case segment
        /// The last event of a client exchange: what went out, what came back (`verdict`).
        case verdict
    }

    /// CLOCK_MONOTONIC ns: when it was observed (or, for tracepoint events, when the kernel did it).
    public var timestampNs: UInt64
    /// CLOCK_REALTIME ns, for the RFC 3339 `time` field: by default `timestampNs` plus the
    /// process's one-time offset between the two clocks (no clock read per event).
    public var wallNs: Int64
    public var side: TraceSide
    public var pid: Int32
    /// Connection id within this process (the listener is a connection too).
    public var conn: Int
    public var local: String?
    public var peer: String?
    public var cookie: UInt64?
    public var kind: Kind
    public var from: TCPState?
    public var to: TCPState?
    public var source: ObservationSource?
    /// The cause as written, without `seenAt` (see `cause`).
    package private(set) var causeHead: String
    /// A kernel-reported change: the program's call that saw it (`cause` ends with
    /// "; seen at <call>"). Kept apart so the trace writers append it instead of a string being
    /// built per event (an allocation and two copies, ~550 instructions; callgrind).
    package private(set) var seenAt: String?
    /// Time spent in `from`, when its start is known.
    public var inStateNs: UInt64?
    public var info: TCPInfo?
    /// Set when RFC 9293 does not allow `from → to`: shown, never rewritten.
    public var unexpected: Bool = false
    /// TIME_WAIT and other timers: milliseconds left, from inet_diag's idiag_expires.
    public var timerMs: UInt32?
    public var errno: Int32?
    /// Data events: the bytes' count (the bytes themselves are in `bytes`).
    public var byteCount: Int?
    /// State events: the id of the captured segment that caused the transition (RFC 9293),
    /// where one did; segment events: their own id.
    public var segmentID: Int?
    /// State events: the interval the change happened in (the reading before, the reading or
    /// call that showed it), for ordering both sides causally (`CausalOrder`).
    public var earliestNs: UInt64?
    public var latestNs: UInt64?
    /// Lab events: which try of a retried scenario (1, 2, ...).
    public var attempt: Int?
    /// TCPWatch: the state a warning or closing note is about (`"state"` in JSON).
    public var heldState: TCPState?
    /// What few events carry (`bytes`, `wire`, `verdict`, `process`), boxed: a state event, the
    /// hot path, then holds one nil reference instead of a segment's, a verdict's and two
    /// arrays' worth of fields, and building, passing and destroying it retains and releases
    /// ~8 references fewer (callgrind, traced server under connect churn).
    private var rare: RareFields?
}

extension TraceEvent {
    /// In an extension, delegating to the memberwise initializer: the struct's own
    /// property-by-property initializer built the event in a temporary and copied it out (an
    /// outlined copy and destroy of 304 bytes, ~500 instructions an event; callgrind).
    public init(
        timestampNs: UInt64, wallNs: Int64? = nil, side: TraceSide,
        pid: Int32 = ProcessIdentity.pid, conn: Int, local: String? = nil, peer: String? = nil,
        cookie: UInt64? = nil, kind: Kind, from: TCPState? = nil, to: TCPState? = nil,
        source: ObservationSource? = nil, cause: String, seenAt: String? = nil, inStateNs: UInt64? = nil,
        info: TCPInfo? = nil
    ) {
        self.init(timestampNs: timestampNs, wallNs: wallNs ?? TraceTime.wallNs(monotonic: timestampNs), side: side,
                  pid: pid, conn: conn, local: local, peer: peer, cookie: cookie, kind: kind, from: from, to: to,
                  source: source, causeHead: cause, seenAt: seenAt, inStateNs: inStateNs, info: info)
    }
}

extension TraceEvent {
    /// Why it happened, and for a kernel-reported change which call of the program saw it.
    public var cause: String {
        get { seenAt.map { causeHead + "; seen at " + $0 } ?? causeHead }
        set { causeHead = newValue; seenAt = nil }
    }

    /// Data events: the bytes (escaped when rendered). Verdict events: the first bytes that
    /// came back.
    public var bytes: [UInt8]? {
        get { rare?.value.bytes }
        set { editRare { $0.bytes = newValue } }
    }

    /// Segment events: the segment itself.
    public var wire: WireSegment? {
        get { rare?.value.wire }
        set { editRare { $0.wire = newValue } }
    }

    /// Verdict events: sent/received counts, first difference, outcome.
    public var verdict: ExchangeVerdict? {
        get { rare?.value.verdict }
        set { editRare { $0.verdict = newValue } }
    }

    /// TCPWatch: the owning process's command (`pid` is its pid, 0 when unknown).
    public var process: String? {
        get { rare?.value.process }
        set { editRare { $0.process = newValue } }
    }

    private mutating func editRare(_ edit: (inout RareFields.Value) -> Void) {
        var value = rare?.value ?? RareFields.Value()
        edit(&value)
        rare = value.isEmpty ? nil : RareFields(value)
    }
}

/// `TraceEvent`'s rarely set fields, in an immutable box: a change makes a new box, so copies
/// of an event never share a mutable one (value semantics, and Sendable without `@unchecked`).
final class RareFields: Sendable, Equatable {
    struct Value: Sendable, Equatable {
        var bytes: [UInt8]?
        var wire: WireSegment?
        var verdict: ExchangeVerdict?
        var process: String?
        var isEmpty: Bool { bytes == nil && wire == nil && verdict == nil && process == nil }
    }

    let value: Value

    init(_ value: Value) { self.value = value }

    static func == (a: RareFields, b: RareFields) -> Bool { a === b || a.value == b.value }
}

public enum ProcessIdentity {
    public static let pid: Int32 = getpid()
}

extension TraceEvent {
    /// The `segment` event for a captured segment: written on the sending side's behalf (the
    /// receiver's when the sender is not traced), local = source, peer = destination.
    public init(segment: WireSegment, conn: Int) {
        self.init(timestampNs: segment.timestampNs, wallNs: segment.wallNs, side: segment.sender ?? .client,
                  conn: conn, local: segment.source.description, peer: segment.destination.description,
                  kind: .segment, cause: segment.label())
        segmentID = segment.id
        wire = segment
    }
}
