import SocketKit

/// What usually causes each transition (RFC 9293 §3.3.2), for the `cause` of a change TCPWatch
/// saw from outside the program: it sees the state, not the call or the segment.
enum WatchCauses {
    static func describe(_ from: TCPState?, _ to: TCPState) -> String {
        switch (from, to) {
        case (.closed?, .synSent), (nil, .synSent): return "connect(): SYN sent"
        case (.closed?, .listen), (nil, .listen): return "listen()"
        case (.listen?, .synReceived), (nil, .synReceived): return "SYN received: the listener's child socket"
        case (.listen?, .closed): return "the listener was closed"
        case (.synSent?, .established): return "SYN+ACK received, ACK sent"
        case (.synSent?, .synReceived): return "SYN received while ours was out: simultaneous open"
        case (.synSent?, .closed): return "connect() failed: refused, reset or timed out"
        case (.synReceived?, .established): return "the handshake's ACK received"
        case (.established?, .finWait1), (.synReceived?, .finWait1): return "the program closed or shut down: FIN sent"
        case (.established?, .closeWait): return "the peer's FIN received"
        case (.finWait1?, .finWait2): return "our FIN acknowledged; the peer may still send"
        case (.finWait1?, .closing): return "the peer's FIN crossed ours: simultaneous close"
        case (.finWait1?, .timeWait): return "the peer's FIN+ACK received"
        case (.finWait2?, .timeWait): return "the peer's FIN received, ACK sent"
        case (.closing?, .timeWait): return "our FIN acknowledged"
        case (.closeWait?, .lastAck): return "the program called close(): FIN sent"
        case (.lastAck?, .closed): return "our FIN acknowledged: connection closed"
        case (.timeWait?, .closed): return "TIME_WAIT timer expired (2 MSL)"
        case (_, .closed): return "connection closed or reset"
        default: return "state changed"
        }
    }
}
