import Glibc
import SocketKit
import Synchronization

/// A client failure that is not a single system call (a timeout, a mismatched echo).
public struct ClientError: Error, CustomStringConvertible, Sendable, ExitStatusProviding {
    public let description: String
    public let errno: Int32?
    public init(_ description: String, errno: Int32? = nil) {
        self.description = description
        self.errno = errno
    }
    /// 65 (data error) for a wrong echo; the errno's code for a timeout or a system failure.
    public var exitStatus: Int32 { errno.map { SysExits.code(errno: $0, call: "") } ?? SysExits.dataError }
}

/// A termination signal asking the client to stop: wakes any wait through an eventfd (set
/// from a dispatch signal source, so nothing runs in a signal handler).
public final class ClientInterruption: Sendable {
    public let wakeup: WakeupFD
    private let signo = Atomic<Int32>(0)

    public init() throws { wakeup = try WakeupFD() }

    public func interrupt(signal: Int32) {
        signo.store(signal, ordering: .relaxed)
        wakeup.wake()
    }

    /// The signal that arrived, if any.
    public var signal: Int32? {
        let value = signo.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }
}

/// The operation stopped because of SIGINT/SIGTERM; the command exits 128 + signal.
public struct ClientInterrupted: Error, CustomStringConvertible, Sendable, ExitStatusProviding {
    public let signal: Int32
    /// 128 + signal, as a shell reports a process killed by it.
    public var exitStatus: Int32 { 128 + signal }
    public var description: String { "interrupted by \(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)")" }
}
