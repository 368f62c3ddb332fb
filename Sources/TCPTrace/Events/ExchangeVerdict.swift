import SocketKit

/// The client's judgement of one exchange: how many bytes went out, how many came back, where
/// the two first differ, and what that says about the peer. Carried by the `verdict` event that
/// ends a client's trace, so a JSON trace alone says how the exchange went.
public struct ExchangeVerdict: Sendable, Equatable {
    public enum Outcome: String, Sendable, CaseIterable {
        /// Every byte came back, identical, and nothing else.
        case echoed
        /// What came back is a strict prefix of what went out (nothing at all included): the
        /// peer closed before echoing everything.
        case shortEcho = "short_echo"
        /// Everything came back identical, then more bytes followed.
        case extraBytes = "extra_bytes"
        /// The peer sent something else and closed: it is not an echo server.
        case notEcho = "not_echo"
        /// The bytes differ somewhere past the part the client keeps for comparison.
        case differs
        /// `--expect any`: no echo expected; what came back is reported as it is.
        case received
    }

    public var outcome: Outcome
    public var sent: Int
    public var received: Int
    /// 0-based offset of the first byte that differs between what went out and what came back
    /// (the shorter length when one is a prefix of the other); nil when identical or not located.
    public var firstDifference: Int?

    public init(outcome: Outcome, sent: Int, received: Int, firstDifference: Int?) {
        self.outcome = outcome
        self.sent = sent
        self.received = received
        self.firstDifference = firstDifference
    }

    /// Whether the exchange ended the way its mode wanted (identical echo, or anything for `any`).
    public var ok: Bool { outcome == .echoed || outcome == .received }
}
