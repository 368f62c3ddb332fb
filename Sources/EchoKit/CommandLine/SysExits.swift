import Glibc
import SocketKit
import TCPTrace

/// An error that knows its own exit status: engines declare it, so the command line does not
/// have to know every engine's error types.
public protocol ExitStatusProviding: Error {
    var exitStatus: Int32 { get }
}

/// sysexits(3) codes, and the one-line message plus code for any error a command can meet.
public enum SysExits {
    public static let ok: Int32 = 0
    public static let usage: Int32 = 64
    public static let dataError: Int32 = 65
    public static let noInput: Int32 = 66
    public static let noHost: Int32 = 68
    public static let unavailable: Int32 = 69
    public static let software: Int32 = 70
    public static let osError: Int32 = 71
    public static let cantCreate: Int32 = 73
    public static let ioError: Int32 = 74
    public static let tempFail: Int32 = 75
    public static let noPermission: Int32 = 77

    /// The exit code for `error`: no stack trace, ever, for anything a user can cause.
    public static func code(for error: Error) -> Int32 {
        switch error {
        case is UsageError: return usage
        case is ResolutionError: return noHost
        case let error as any ExitStatusProviding: return error.exitStatus
        case let error as SystemCallError: return code(errno: error.errno, call: error.call)
        default: return software
        }
    }

    package static func code(errno: Int32, call: String) -> Int32 {
        switch errno {
        case EACCES, EPERM: return noPermission
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, EADDRINUSE, EADDRNOTAVAIL, ECONNRESET, EPIPE:
            return unavailable
        case ETIMEDOUT: return tempFail
        case ENOENT where call == "open": return noInput
        case EMFILE, ENFILE, ENOMEM, ENOBUFS: return osError
        default: return call == "open" ? cantCreate : osError
        }
    }

    /// Finishes the current trace session (so no trace line is lost and the message comes
    /// last), prints `command: message` on stderr and exits with `code`. Prefer throwing to
    /// `CommandExit.run`; this is for the few places that must leave before main can.
    public static func fail(_ command: String, _ message: String, code: Int32) -> Never {
        TraceSession.finishCurrent()
        SignalSafeOutput.line("\(command): \(message)")
        exit(code)
    }
}

/// A command failure with a message and a chosen sysexits code (thrown up to `CommandExit`).
public struct CommandFailure: Error, CustomStringConvertible, Sendable, ExitStatusProviding {
    public let description: String
    public let exitStatus: Int32
    public init(_ description: String, exitStatus: Int32) {
        self.description = description
        self.exitStatus = exitStatus
    }
}

/// `--kernel-trace on` impossible: 77 when it is a matter of privilege, 69 otherwise.
extension KernelTraceUnavailable: ExitStatusProviding {
    public var exitStatus: Int32 { needsPrivilege ? SysExits.noPermission : SysExits.unavailable }
}

public enum SocketKitVersion {
    public static let current = "0.1.0"
}
