import SocketKit
import Synchronization
import TCPTrace

/// Counters shared by all event loops, for the final summary and tests.
public final class EchoServerStats: Sendable {
    let accepted = Atomic<Int>(0)
    let closed = Atomic<Int>(0)
    let bytesEchoed = Atomic<UInt64>(0)
    let errors = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let idleClosed = Atomic<Int>(0)
    let open = Atomic<Int>(0)

    public init() {}

    public struct Snapshot: Sendable, Equatable {
        public var accepted: Int
        public var closed: Int
        public var open: Int
        public var bytesEchoed: UInt64
        public var errors: Int
        public var refusedOverLimit: Int
        public var idleClosed: Int
    }

    public var snapshot: Snapshot {
        Snapshot(accepted: accepted.load(ordering: .relaxed), closed: closed.load(ordering: .relaxed),
                 open: open.load(ordering: .relaxed), bytesEchoed: bytesEchoed.load(ordering: .relaxed),
                 errors: errors.load(ordering: .relaxed), refusedOverLimit: refused.load(ordering: .relaxed),
                 idleClosed: idleClosed.load(ordering: .relaxed))
    }
}

extension EchoServerStats.Snapshot: CustomStringConvertible {
    public var description: String {
        "\(accepted) connection\(accepted == 1 ? "" : "s") served, \(bytesEchoed) bytes echoed, \(errors) errors"
            + (refusedOverLimit > 0 ? ", \(refusedOverLimit) refused over the connection limit" : "")
            + (idleClosed > 0 ? ", \(idleClosed) closed idle" : "")
            + (open > 0 ? ", \(open) still open at exit" : "")
    }
}
