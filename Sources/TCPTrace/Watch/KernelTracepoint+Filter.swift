import CSocketKit
import SocketKit

extension KernelTracepoint {
    /// Installs an ftrace filter on every CPU's event, so the kernel writes only the watched
    /// ports' changes into the rings: a churn on other ports then costs the watcher nothing.
    /// C: `ioctl(PERF_EVENT_IOC_SET_FILTER)`.
    public func setFilter(_ expression: String) throws {
        for fd in pollDescriptors {
            _ = try syscall("ioctl(PERF_EVENT_IOC_SET_FILTER)") { CSocketKit_perf_set_filter(fd, expression) }
        }
    }

    /// `sport == 80 || dport == 80 || …` for the tracepoint's host-order port fields;
    /// `localOnly`: `sport == 80 || …`, the sockets bound to those ports (a server's own).
    public static func portFilter(_ ports: [UInt16], localOnly: Bool = false) -> String {
        Array(Set(ports)).sorted().map { localOnly ? "sport == \($0)" : "sport == \($0) || dport == \($0)" }
            .joined(separator: " || ")
    }
}

extension KernelTracepoint {
    /// TCPWatch's `--kernel-trace`: the tracepoint filtered to `ports` (user-space filtering
    /// when none or the kernel refuses), or nil with the reason. `on` throws when impossible.
    public static func openForWatch(mode: KernelTraceMode, ports: [UInt16]) throws -> (KernelTracepoint?, note: String) {
        let fallback = "states from sock_diag polls and destroy notifications, the rest inferred"
        guard mode != .off else { return (nil, "kernel trace off (--kernel-trace off): \(fallback)") }
        let tracepoint: KernelTracepoint
        do {
            tracepoint = try KernelTracepoint(pagesPerCPU: 64, wakeupEvents: 16)
        } catch {
            let reason = describe(error)
            if mode == .on { throw KernelTraceUnavailable(reason: reason) }
            return (nil, "kernel trace unavailable (\(reason)): \(fallback)")
        }
        var filtered = "filtered in user space"
        if !ports.isEmpty {
            do {
                try tracepoint.setFilter(portFilter(ports))
                filtered = "filtered in the kernel to the watched ports"
            } catch {
                filtered = "filtered in user space (the kernel refused the filter: \(error))"
            }
        }
        return (tracepoint, "kernel trace on: every transition from sock:inet_sock_set_state (\(filtered)); TIME_WAIT from sock_diag")
    }
}
