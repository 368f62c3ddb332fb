import Glibc
import SocketKit

/// Kernel-wide TCP counters and limits that explain states the kernel skipped. Readable by any
/// user, per network namespace.
public enum KernelCounters {
    /// TcpExt TCPTimeWaitOverflow from /proc/net/netstat: how many connections the kernel closed
    /// *without* a TIME_WAIT because its table of TIME_WAIT sockets was full
    /// (net.ipv4.tcp_max_tw_buckets). nil when unreadable.
    public static func timeWaitOverflows() -> UInt64? {
        guard let text = try? TextFile.read("/proc/net/netstat") else { return nil }
        // Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
        let lines = text.split(separator: "\n")
        for (index, line) in lines.enumerated() where line.hasPrefix("TcpExt:") && index + 1 < lines.count {
            let names = line.split(separator: " ")
            let values = lines[index + 1].split(separator: " ")
            if let column = names.firstIndex(of: "TCPTimeWaitOverflow"), column < values.count {
                return UInt64(values[column])
            }
            break
        }
        return nil
    }

    /// net.ipv4.tcp_max_tw_buckets.
    public static func maxTimeWaitBuckets() -> Int? {
        (try? TextFile.read("/proc/sys/net/ipv4/tcp_max_tw_buckets")).flatMap { Int($0.trimmedWhitespace) }
    }

    /// TIME_WAIT sockets in this network namespace (inet_diag dump, IPv4 + IPv6) and the limit.
    /// When `used` nears `limit`, new connections get no TIME_WAIT at all.
    package static func timeWaitTableUsage() -> (used: Int, limit: Int)? {
        guard let limit = maxTimeWaitBuckets(), let diag = try? SockDiag() else { return nil }
        var used = 0
        for family in [AF_INET, AF_INET6] {
            guard let entries = try? diag.dump(family: family, states: [6]) else { return nil }
            used += entries.count
        }
        return (used, limit)
    }

    /// True when fewer than `margin` TIME_WAIT slots are left: a test or a lab run expecting a
    /// TIME_WAIT would see Linux skip it (see `SocketTracker.checkSkippedTimeWait`). Linux
    /// refuses a TIME_WAIT only once the table holds `tcp_max_tw_buckets` entries, and sizes that
    /// limit from RAM (4096 on a small VM, 131072 with 8 GiB+), so the margin is a tenth of
    /// this machine's own limit (at least 256, the most one test creates), not a fixed number.
    package static func timeWaitTableNearlyFull(margin: Int? = nil) -> Bool {
        guard let usage = timeWaitTableUsage() else { return false }
        return usage.limit - usage.used < (margin ?? timeWaitMargin(limit: usage.limit))
    }

    /// The free TIME_WAIT slots a test run wants: 10% of the limit, at least 256.
    package static func timeWaitMargin(limit: Int) -> Int { max(256, limit / 10) }

    /// One line for a skipped test or a note: how full the TIME_WAIT table is.
    package static var timeWaitTableSummary: String {
        guard let usage = timeWaitTableUsage() else { return "the kernel's TIME_WAIT table could not be read" }
        return "only \(usage.limit - usage.used) TIME_WAIT slots free (\(usage.used) used of net.ipv4.tcp_max_tw_buckets = "
            + "\(usage.limit); wanted \(timeWaitMargin(limit: usage.limit))): Linux may skip TIME_WAIT"
    }
}
