/// The RFC 9293 connection states, mapped from the kernel's numbering (include/net/tcp_states.h).
///
/// One vocabulary everywhere: these names are what the logs, JSON and docs print.
public enum TCPState: Hashable, Sendable, CustomStringConvertible {
    case closed, listen, synSent, synReceived, established
    case finWait1, finWait2, closeWait, closing, lastAck, timeWait
    /// A kernel value outside 1...12; printed as `UNKNOWN(n)`, never guessed.
    case unknown(UInt8)

    /// Kernel numbers: 1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, 4 FIN_WAIT1, 5 FIN_WAIT2,
    /// 6 TIME_WAIT, 7 CLOSE, 8 CLOSE_WAIT, 9 LAST_ACK, 10 LISTEN, 11 CLOSING, 12 NEW_SYN_RECV.
    /// NEW_SYN_RECV is Linux's request mini-socket for a half-open connection: SYN_RECEIVED.
    public init(kernel value: UInt8) {
        switch value {
        case 1: self = .established
        case 2: self = .synSent
        case 3, 12: self = .synReceived
        case 4: self = .finWait1
        case 5: self = .finWait2
        case 6: self = .timeWait
        case 7: self = .closed
        case 8: self = .closeWait
        case 9: self = .lastAck
        case 10: self = .listen
        case 11: self = .closing
        default: self = .unknown(value)
        }
    }

    public static let all: [TCPState] = [
        .closed, .listen, .synSent, .synReceived, .established, .finWait1, .finWait2,
        .closeWait, .closing, .lastAck, .timeWait,
    ]

    /// Parses the printed name (`FIN_WAIT_1`); nil for anything else.
    public init?(name: String) {
        guard let match = TCPState.all.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    public var name: String {
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
        case .unknown(let n): return "UNKNOWN(\(n))"
        }
    }

    public var description: String { name }

    /// States that normally last microseconds: worth sampling quickly while in them.
    public var isTransient: Bool {
        switch self {
        case .synSent, .synReceived, .finWait1, .closing, .lastAck: return true
        default: return false
        }
    }

    /// Inverse of `init(kernel:)` for inet_diag state masks (SYN_RECEIVED → 3).
    public var kernelValue: UInt8? {
        switch self {
        case .established: return 1
        case .synSent: return 2
        case .synReceived: return 3
        case .finWait1: return 4
        case .finWait2: return 5
        case .timeWait: return 6
        case .closed: return 7
        case .closeWait: return 8
        case .lastAck: return 9
        case .listen: return 10
        case .closing: return 11
        case .unknown(let n): return n
        }
    }
}
