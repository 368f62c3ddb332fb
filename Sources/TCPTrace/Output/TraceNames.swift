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
    var staticName: StaticString {
        switch self {
        case .tcpInfo: return "tcp_info"
        case .sockDiag: return "sock_diag"
        case .tracepoint: return "tracepoint"
        case .inferred: return "inferred"
        }
    }
}

extension TraceEvent.Kind {
    var staticName: StaticString {
        switch self {
        case .state: return "state"
        case .warning: return "warning"
        case .error: return "error"
        case .syscall: return "syscall"
        case .data: return "data"
        case .info: return "info"
        case .segment: return "segment"
        case .verdict: return "verdict"
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

extension TraceEvent.Kind {
    var jsonEventMember: StaticString {
        switch self {
        case .state: return #","event":"state""#
        case .warning: return #","event":"warning""#
        case .error: return #","event":"error""#
        case .syscall: return #","event":"syscall""#
        case .data: return #","event":"data""#
        case .info: return #","event":"info""#
        case .segment: return #","event":"segment""#
        case .verdict: return #","event":"verdict""#
        }
    }
}

extension ObservationSource {
    var jsonSourceMember: StaticString {
        switch self {
        case .tcpInfo: return #","source":"tcp_info""#
        case .sockDiag: return #","source":"sock_diag""#
        case .tracepoint: return #","source":"tracepoint""#
        case .inferred: return #","source":"inferred""#
        }
    }
}

extension TCPState {
    /// `,"from":"NAME"`; nil for an unknown kernel value (written as any string).
    var jsonFromMember: StaticString? {
        switch self {
        case .closed: return #","from":"CLOSED""#
        case .listen: return #","from":"LISTEN""#
        case .synSent: return #","from":"SYN_SENT""#
        case .synReceived: return #","from":"SYN_RECEIVED""#
        case .established: return #","from":"ESTABLISHED""#
        case .finWait1: return #","from":"FIN_WAIT_1""#
        case .finWait2: return #","from":"FIN_WAIT_2""#
        case .closeWait: return #","from":"CLOSE_WAIT""#
        case .closing: return #","from":"CLOSING""#
        case .lastAck: return #","from":"LAST_ACK""#
        case .timeWait: return #","from":"TIME_WAIT""#
        case .unknown: return nil
        }
    }

    /// `,"to":"NAME"`; nil for an unknown kernel value.
    var jsonToMember: StaticString? {
        switch self {
        case .closed: return #","to":"CLOSED""#
        case .listen: return #","to":"LISTEN""#
        case .synSent: return #","to":"SYN_SENT""#
        case .synReceived: return #","to":"SYN_RECEIVED""#
        case .established: return #","to":"ESTABLISHED""#
        case .finWait1: return #","to":"FIN_WAIT_1""#
        case .finWait2: return #","to":"FIN_WAIT_2""#
        case .closeWait: return #","to":"CLOSE_WAIT""#
        case .closing: return #","to":"CLOSING""#
        case .lastAck: return #","to":"LAST_ACK""#
        case .timeWait: return #","to":"TIME_WAIT""#
        case .unknown: return nil
        }
    }
}
