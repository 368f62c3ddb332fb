import SocketKit

// The names the trace writers print for the event's enums, as literals: their bytes are copied
// without a String being made (a `rawValue` or `name` String cost ~140 instructions more per
// name through `TraceBytes.append(_: String)`; five names a state event; callgrind). Each equals
// the case's `rawValue` (TraceRendererTests.staticNames_matchRawValues).

extension TraceSide {
    var staticName: StaticString {
        switch self {
        case .server: return "server"
        case .client: return "client"
        }
    }
}

extension ObservationSource {
    var staticName: StaticString { literals.name }
    /// `,"source":"NAME"` (see the JSON members below).
    var jsonSourceMember: StaticString { literals.member }

    private var literals: (name: StaticString, member: StaticString) {
        switch self {
        case .tcpInfo: return ("tcp_info", #","source":"tcp_info""#)
        case .sockDiag: return ("sock_diag", #","source":"sock_diag""#)
        case .tracepoint: return ("tracepoint", #","source":"tracepoint""#)
        case .inferred: return ("inferred", #","source":"inferred""#)
        }
    }
}

extension TraceEvent.Kind {
    var staticName: StaticString { literals.name }
    /// `,"event":"NAME"` (see the JSON members below).
    var jsonEventMember: StaticString { literals.member }

    private var literals: (name: StaticString, member: StaticString) {
        switch self {
        case .state: return ("state", #","event":"state""#)
        case .warning: return ("warning", #","event":"warning""#)
        case .error: return ("error", #","event":"error""#)
        case .syscall: return ("syscall", #","event":"syscall""#)
        case .data: return ("data", #","event":"data""#)
        case .info: return ("info", #","event":"info""#)
        case .segment: return ("segment", #","event":"segment""#)
        case .verdict: return ("verdict", #","event":"verdict""#)
        }
    }
}

extension TraceBytes {
    /// A state's name, padded: the literal's bytes, or `name` for an unknown kernel value.
    mutating func append(_ state: TCPState, padTo width: Int, left: Bool = false) {
        guard let name = state.staticName else { append(ascii: state.name, padTo: width, left: left); return }
        let start = count
        append(name)
        pad(from: start, to: width, left: left)
    }

    /// A state's name, unpadded.
    mutating func append(_ state: TCPState) {
        if let name = state.staticName { append(name) } else { append(state.name) }
    }
}

// JSON members whose value is one of these names, key and value as one literal with the comma
// before it (each follows another member): one copy instead of a key and a quoted name, ~110
// instructions a member, four a state event (callgrind). Each equals what `member(_:static:)`
// writes (TraceRendererTests.jsonNameMembers_matchTheKeyAndName).

extension TCPState {
    /// `,"from":"NAME"` and `,"to":"NAME"`; nil for an unknown kernel value (written as any string).
    var jsonMembers: (from: StaticString, to: StaticString)? {
        switch self {
        case .closed: return (#","from":"CLOSED""#, #","to":"CLOSED""#)
        case .listen: return (#","from":"LISTEN""#, #","to":"LISTEN""#)
        case .synSent: return (#","from":"SYN_SENT""#, #","to":"SYN_SENT""#)
        case .synReceived: return (#","from":"SYN_RECEIVED""#, #","to":"SYN_RECEIVED""#)
        case .established: return (#","from":"ESTABLISHED""#, #","to":"ESTABLISHED""#)
        case .finWait1: return (#","from":"FIN_WAIT_1""#, #","to":"FIN_WAIT_1""#)
        case .finWait2: return (#","from":"FIN_WAIT_2""#, #","to":"FIN_WAIT_2""#)
        case .closeWait: return (#","from":"CLOSE_WAIT""#, #","to":"CLOSE_WAIT""#)
        case .closing: return (#","from":"CLOSING""#, #","to":"CLOSING""#)
        case .lastAck: return (#","from":"LAST_ACK""#, #","to":"LAST_ACK""#)
        case .timeWait: return (#","from":"TIME_WAIT""#, #","to":"TIME_WAIT""#)
        case .unknown: return nil
        }
    }
}
