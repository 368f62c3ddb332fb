import SocketKit
import TCPTrace

/// What went out and what came back, compared as the bytes flow, for the client's verdict.
///
/// A stream can be gigabytes, so only the first `window` bytes of each direction are kept (the
/// first difference is located there); beyond it an FNV-1a digest of each direction decides
/// whether the whole echo was identical.
public struct EchoComparison: Sendable {
    /// Bytes of each direction kept to locate the first difference (2 MiB at most in memory).
    public static let window = 1 << 20
    /// How many of the first bytes that came back a verdict shows (escaped).
    public static let shownBytes = 64

    public private(set) var sent = 0
    public private(set) var received = 0
    private var sentHead: [UInt8] = []
    private var receivedHead: [UInt8] = []
    private var sentDigest: UInt64 = 0xcbf2_9ce4_8422_2325
    private var receivedDigest: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func noteSent<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        sent += bytes.count
        sentDigest = Self.fnv(sentDigest, bytes)
        if sentHead.count < Self.window { sentHead += bytes.prefix(Self.window - sentHead.count) }
    }

    public mutating func noteReceived<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        received += bytes.count
        receivedDigest = Self.fnv(receivedDigest, bytes)
        if receivedHead.count < Self.window { receivedHead += bytes.prefix(Self.window - receivedHead.count) }
    }

    /// Every byte came back identical, and nothing else.
    public var matched: Bool { sent == received && sentDigest == receivedDigest && firstDifference == nil }

    /// Whether what came back so far is still a prefix of what went out (messages mode stops
    /// sending once it is not: a peer that is not echoing would only be sent more to ignore).
    public var receivedIsPrefixOfSent: Bool {
        received <= sent && receivedHead.count == min(received, Self.window)
            && receivedHead.elementsEqual(sentHead.prefix(receivedHead.count))
    }

    /// The first bytes that came back (at most `shownBytes`).
    public var firstBytesReceived: ArraySlice<UInt8> { receivedHead.prefix(Self.shownBytes) }

    /// 0-based offset of the first difference within the kept window; the shorter length when
    /// one side is a prefix of the other; nil when identical or not located.
    public var firstDifference: Int? {
        let common = min(sentHead.count, receivedHead.count)
        for index in 0..<common where sentHead[index] != receivedHead[index] { return index }
        if sent == received { return nil }
        // Identical as far as both are kept: the difference is where the shorter one ends, if
        // that end lies within what was kept.
        let shorter = min(sent, received)
        return shorter <= common ? shorter : nil
    }

    /// The verdict for the exchange: an echo expected (`expectEcho`) or anything (`--expect any`).
    public func verdict(expectEcho: Bool) -> ExchangeVerdict {
        let difference = firstDifference
        let outcome: ExchangeVerdict.Outcome
        if !expectEcho {
            outcome = .received
        } else if matched {
            outcome = .echoed
        } else if let difference, difference == received, received < sent {
            outcome = .shortEcho
        } else if let difference, difference == sent, received > sent {
            outcome = .extraBytes
        } else if difference != nil {
            outcome = .notEcho
        } else {
            outcome = .differs
        }
        return ExchangeVerdict(outcome: outcome, sent: sent, received: received, firstDifference: outcome == .echoed ? nil : difference)
    }

    /// One line a user reads: counts, what came back (escaped), and what that means.
    public func describe(_ verdict: ExchangeVerdict) -> String {
        let shown = ByteEscaping.escape(receivedHead.prefix(Self.shownBytes + 1), limit: Self.shownBytes)
        let what = received == 0 ? "received 0" : "received \(received) (\"\(shown)\")"
        let counts = "sent \(sent) bytes, \(what)"
        switch verdict.outcome {
        case .echoed:
            return "echo matched: sent \(sent) bytes, received \(received) identical"
        case .received:
            return "\(counts); the peer closed cleanly"
        case .shortEcho:
            return "echo differs: \(counts); the peer closed after echoing \(received) of \(sent) bytes"
        case .extraBytes:
            return "echo differs: \(counts); the echo was followed by \(received - sent) more bytes"
        case .notEcho:
            return "echo differs: \(counts); first difference at byte \(verdict.firstDifference ?? 0): "
                + "the peer is not an echo server (it sent something else and closed)"
        case .differs:
            return "echo differs: \(counts); the bytes differ beyond the first \(Self.window) compared"
        }
    }

    private static func fnv<C: Collection>(_ hash: UInt64, _ bytes: C) -> UInt64 where C.Element == UInt8 {
        var h = hash
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        return h
    }
}

/// The exchange ended with a verdict other than the one the mode wanted: exit status 1.
public struct EchoMismatch: Error, CustomStringConvertible, Sendable, ExitStatusProviding {
    public let verdict: ExchangeVerdict
    public let description: String
    public init(verdict: ExchangeVerdict, description: String) {
        self.verdict = verdict
        self.description = description
    }
    public var exitStatus: Int32 { 1 }
}
