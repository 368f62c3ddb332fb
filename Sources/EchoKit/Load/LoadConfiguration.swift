import Glibc
import SocketKit
import TCPTrace

/// What `LoadGenerator` does: how many connections, which traffic, for how long.
public struct LoadConfiguration: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// Each connection sends one `size` message, waits for its whole echo, repeats. Latency = round trip.
        case pingpong
        /// Each connection keeps up to `window` bytes in flight and reads the echo. Latency = send of a
        /// `size` chunk to the arrival of its last echoed byte.
        case stream
        /// Each slot repeatedly connects, sends one message, reads the echo, closes. Latency = connect() to echo.
        case connect
    }

    public var host = "127.0.0.1"
    public var port: UInt16 = 7007
    public var mode: Mode = .pingpong
    public var connections = 100
    public var durationSeconds: Double = 10
    public var size = 64
    /// Worker threads, each with its own epoll loop (default: one per usable CPU, see CPUBudget; at most one per connection).
    public var threads: Int?
    /// A connection that makes no progress this long is counted as a timeout and closed; the
    /// run also ends at most this long after `durationSeconds`.
    public var timeoutSeconds: Double = 5

    public init() {}

    static let maxConnections = 20_000
    static let maxSize = 1 << 20
    static let maxDuration: Double = 3600

    /// Throws `UsageError` for values outside the documented bounds.
    public func validate() throws {
        guard (1...Self.maxConnections).contains(connections) else {
            throw UsageError("--connections: must be 1...\(Self.maxConnections)")
        }
        guard (1...Self.maxSize).contains(size) else { throw UsageError("--size: must be 1...\(Self.maxSize) bytes") }
        guard durationSeconds > 0, durationSeconds <= Self.maxDuration else {
            throw UsageError("--duration: must be more than 0 and at most \(Int(Self.maxDuration)) seconds")
        }
        if let threads, !(1...256).contains(threads) { throw UsageError("--threads: must be 1...256") }
    }

    var effectiveThreads: Int {
        max(1, min(threads ?? CPUBudget.current().usableCPUs, connections))
    }

    /// Stream mode: bytes a connection may have sent but not yet seen echoed.
    var window: Int { max(2 * size, 128 * 1024) }
}
