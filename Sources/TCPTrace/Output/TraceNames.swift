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
