/// `--kernel-trace on` and the tracepoint cannot be opened.
public struct KernelTraceUnavailable: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public var description: String { "--kernel-trace on: the kernel tracepoint is unavailable: \(reason)" }
    /// A matter of privilege (root, CAP_PERFMON), rather than a missing kernel feature: the
    /// command line maps it to sysexits 77 instead of 69.
    public var needsPrivilege: Bool {
        reason.contains("needs root") || reason.contains("CAP_PERFMON") || reason.contains("mounting needs root")
    }
}

extension KernelTracepoint {
    /// The one-line reason the tracepoint cannot be used.
    static func describe(_ error: any Error) -> String {
        reason(for: error)
    }
}
