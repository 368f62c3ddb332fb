import Glibc
import SocketKit
import TCPTrace

/// Everything `EchoServer` needs to know; the executable fills it from the command line.
public struct EchoServerConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: UInt16 = 7007
    /// Event loops, all accepting on the one listener (a connection goes to the least loaded):
    /// by default one per CPU this process may use (affinity, cgroup quota).
    public var threads: Int
    /// How `threads` was chosen, for the listening line ("1 loop: CPU 0 of 2 allowed").
    public private(set) var loopSizing: String
    public var backlog: Int32 = 1024
    /// Connections beyond this are accepted and closed at once, with a warning in the trace.
    public var maxConnections: Int = 100_000
    /// Close a connection after this long without traffic (nil: never).
    public var idleTimeoutSeconds: Double? = nil
    /// How long a graceful stop waits for open connections to finish.
    public var drainTimeoutSeconds: Double = 5
    /// Bytes a connection may have queued for a peer that does not read before the server
    /// stops reading from it (backpressure). Memory per connection is bounded by this.
    public var pendingLimit: Int = 256 * 1024
    /// Test hook for the CLOSE_WAIT lab: never close after the peer's FIN.
    public var withholdClose = false

    public init() {
        let budget = CPUBudget.current()
        threads = budget.usableCPUs
        loopSizing = budget.describe(loops: threads, overridden: false)
    }

    /// `--threads N`: the user's count wins over the CPU budget.
    public mutating func setThreads(_ count: Int) {
        threads = count
        loopSizing = CPUBudget.current().describe(loops: count, overridden: true)
    }
}
