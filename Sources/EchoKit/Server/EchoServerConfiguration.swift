import Glibc
import SocketKit
import TCPTrace

/// Everything `EchoServer` needs to know; the executable fills it from the command line.
public struct EchoServerConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: UInt16 = 7007
    /// Event loops, all accepting on the one listener; a connection goes to the least loaded.
    public var threads: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
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

    public init() {}
}
