import SocketKit

extension TCPState {
    /// States that normally last microseconds: worth sampling quickly while in them (the
    /// tracker's 20 µs backoff, see `SocketTracker.nextSampleDelayNs`).
    public var isTransient: Bool {
        switch self {
        case .synSent, .synReceived, .finWait1, .closing, .lastAck: return true
        default: return false
        }
    }
}
