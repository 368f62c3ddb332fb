/// The RFC 9293 connection states, mapped from the kernel's numbering (include/net/tcp_states.h).
///
/// One vocabulary everywhere: these names are what the logs, JSON and docs print.
public enum TCPState: Hashable, Sendable, CustomStringConvertible {
    case closed, listen, synSent, synReceived, established
    case finWait1, finWait2, closeWait, closing, lastAck, timeWait
    /// A kernel value outside 1...12; printed as `UNKNOWN(n)`, never guessed.
    case unknown(UInt8)

    /// NEW_SYN_RECV is Linux's request mini-socket for a half-open connection: SYN_RECEIVED.
    /// Inlined into callers (the tracepoint path converts two states a kernel change, ~35
    /// instructions a call when it was one).
    @inlinable @inline(__always)
    public init(kernel value: UInt8) {
        self = KernelTCPState(rawValue: value)?.rfcState ?? .unknown(value)
    }

    /// The eleven RFC 9293 states, in the RFC's order.
    public static let all: [TCPState] = [
        .closed, .listen, .synSent, .synReceived, .established, .finWait1, .finWait2,
        .closeWait, .closing, .lastAck, .timeWait,
    ]

    /// Parses the printed name (`FIN_WAIT_1`); nil for anything else.
    public init?(name: String) {
        guard let match = TCPState.all.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// The RFC 9293 name printed everywhere (`FIN_WAIT_1`, `CLOSED`).
    public var name: String {
        staticName.map { String(describing: $0) } ?? "UNKNOWN(\(kernelValue ?? 0))"
    }

    /// `name` as a literal (nil for `unknown`): the trace writers copy its bytes without
    /// making a String (~140 instructions a name in a JSON line, callgrind).
    public var staticName: StaticString? {
        switch self {
        case .closed: return "CLOSED"
        case .listen: return "LISTEN"
        case .synSent: return "SYN_SENT"
        case .synReceived: return "SYN_RECEIVED"
        case .established: return "ESTABLISHED"
        case .finWait1: return "FIN_WAIT_1"
        case .finWait2: return "FIN_WAIT_2"
        case .closeWait: return "CLOSE_WAIT"
        case .closing: return "CLOSING"
        case .lastAck: return "LAST_ACK"
        case .timeWait: return "TIME_WAIT"
        case .unknown: return nil
        }
    }

    /// Same as `name`.
    public var description: String { name }

    /// Equal when the same case (and, for `unknown`, the same value), as the synthesized `==`,
    /// but inlinable: that one was a call with a switch on both sides, ~16 a traced connection
    /// (callgrind). `hash(into:)` stays synthesized: it agrees with this.
    @inlinable
    public static func == (lhs: TCPState, rhs: TCPState) -> Bool { lhs.caseCode == rhs.caseCode }

    /// The case's position (0–10) in the RFC's order (`all`), or 256 + the kernel value for
    /// `unknown`.
    @inlinable
    package var caseCode: UInt16 {
        switch self {
        case .closed: return 0
        case .listen: return 1
        case .synSent: return 2
        case .synReceived: return 3
        case .established: return 4
        case .finWait1: return 5
        case .finWait2: return 6
        case .closeWait: return 7
        case .closing: return 8
        case .lastAck: return 9
        case .timeWait: return 10
        case .unknown(let value): return 256 + UInt16(value)
        }
    }

    /// Inverse of `init(kernel:)` for inet_diag state masks (SYN_RECEIVED → 3).
    public var kernelValue: UInt8? {
        if case .unknown(let n) = self { return n }
        return KernelTCPState.allCases.first { $0.rfcState == self }?.rawValue
    }
}

/// The kernel's own numbering (include/net/tcp_states.h), the one table both directions of the
/// mapping use. Kernel code compares against these names, never against bare numbers.
public enum KernelTCPState: UInt8, CaseIterable, Sendable {
    case established = 1, synSent, synRecv, finWait1, finWait2, timeWait, close, closeWait
    case lastAck, listen, closing, newSynRecv

    /// The RFC 9293 name; CLOSE is CLOSED and both SYN_RECV forms are SYN_RECEIVED.
    @inlinable
    public var rfcState: TCPState {
        switch self {
        case .established: return .established
        case .synSent: return .synSent
        case .synRecv, .newSynRecv: return .synReceived
        case .finWait1: return .finWait1
        case .finWait2: return .finWait2
        case .timeWait: return .timeWait
        case .close: return .closed
        case .closeWait: return .closeWait
        case .lastAck: return .lastAck
        case .listen: return .listen
        case .closing: return .closing
        }
    }
}
