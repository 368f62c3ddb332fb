import CSocketKit
import Glibc
import SocketKit
import TCPTrace

/// How many CPUs this process may really use: the affinity mask (`taskset`, cpusets), capped by
/// the cgroup v2 CPU quota (`cpu.max`, containers), as Go's GOMAXPROCS and the JVM size
/// themselves. Counting online CPUs instead started two loops time-slicing one allowed CPU
/// (p99 4.75 ms vs 0.96 ms for the C server in the pinned benchmark) and would start 64 loops in
/// a 2-CPU container on a 64-core host.
public struct CPUBudget: Sendable, Equatable {
    /// The CPUs the affinity mask allows, ascending.
    public var allowedCPUs: [Int32]
    /// CPUs online on the machine.
    public var onlineCPUs: Int
    /// The tightest cgroup v2 quota on the way to the root, in CPUs (1.5 = 150000/100000); nil: none.
    public var quotaCPUs: Double?

    public init(allowedCPUs: [Int32], onlineCPUs: Int, quotaCPUs: Double?) {
        self.allowedCPUs = allowedCPUs
        self.onlineCPUs = onlineCPUs
        self.quotaCPUs = quotaCPUs
    }

    /// Reads the calling thread's affinity and the process's cgroup quota.
    public static func current() -> CPUBudget {
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        var cpus = [Int32](repeating: 0, count: 4096)
        let count = cpus.withUnsafeMutableBufferPointer { CSocketKit_allowed_cpus($0.baseAddress, Int32($0.count)) }
        // sched_getaffinity fails only for a bad pid or buffer: fall back to every online CPU.
        let allowed = count > 0 ? Array(cpus[0..<Int(count)]) : (0..<Int32(online)).map { $0 }
        return CPUBudget(allowedCPUs: allowed, onlineCPUs: online, quotaCPUs: CgroupQuota.current())
    }

    /// Loops (or worker threads) to start: one per usable CPU, at least one.
    public var usableCPUs: Int {
        var usable = allowedCPUs.count
        if let quotaCPUs { usable = min(usable, Int(quotaCPUs.rounded(.up))) }
        return max(1, usable)
    }

    /// Why that many: "CPU 0 of 2 allowed", "2 CPUs allowed", "cgroup quota 1.5 CPUs".
    public var reason: String {
        if let quotaCPUs, Int(quotaCPUs.rounded(.up)) < allowedCPUs.count {
            return "cgroup quota \(Self.format(quotaCPUs)) CPUs"
        }
        let count = allowedCPUs.count
        guard count < onlineCPUs else { return "\(count) CPU\(count == 1 ? "" : "s") allowed" }
        guard count <= 4 else { return "\(count) of \(onlineCPUs) CPUs allowed" }
        let list = allowedCPUs.map(String.init).joined(separator: ",")
        return "CPU\(count == 1 ? "" : "s") \(list) of \(onlineCPUs) allowed"
    }

    /// `N loop(s): reason`, or the override's own words when `--threads` chose.
    public func describe(loops: Int, overridden: Bool) -> String {
        let noun = loops == 1 ? "loop" : "loops"
        return overridden ? "\(loops) \(noun): --threads" : "\(loops) \(noun): \(reason)"
    }

    /// 1.5 → "1.5", 2.0 → "2", 0.333… → "0.33".
    static func format(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}

/// The CPU quota of this process's cgroup and every ancestor: the smallest wins, since a child
/// cannot use more than its parent allows. cgroup v2 keeps it in `cpu.max` ("max 100000" or
/// "150000 100000"); v1, still common (this CI machine mounts the cpu controller as v1), in
/// `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
package enum CgroupQuota {
    package static func current(root: String = "/sys/fs/cgroup") -> Double? {
        guard let text = try? TextFile.readIfPresent("/proc/self/cgroup") else { return nil }
        var smallest: Double?
        for line in text.split(separator: "\n") {
            // "hierarchy-id:controllers:path"; v2 is "0::/path".
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            let quota: Double?
            if fields[0] == "0" && fields[1].isEmpty {
                quota = tightest(from: path) { dir in read(root + dir + "/cpu.max").flatMap(parseCPUMax) }
            } else if fields[1].split(separator: ",").contains("cpu") {
                let mount = root + "/" + fields[1]
                quota = tightest(from: path) { dir in
                    guard let quota = read(mount + dir + "/cpu.cfs_quota_us").flatMap({ Double($0) }), quota > 0,
                          let period = read(mount + dir + "/cpu.cfs_period_us").flatMap({ Double($0) }), period > 0
                    else { return nil }
                    return quota / period
                }
            } else {
                continue
            }
            if let quota { smallest = min(smallest ?? quota, quota) }
        }
        return smallest
    }

    /// The smallest quota of `path` and its ancestors up to the hierarchy's root.
    private static func tightest(from path: String, _ quotaAt: (String) -> Double?) -> Double? {
        var dir = path == "/" ? "" : path
        var smallest: Double?
        while true {
            if let quota = quotaAt(dir) { smallest = min(smallest ?? quota, quota) }
            guard let slash = dir.lastIndex(of: "/") else { break }
            dir = String(dir[..<slash])
        }
        return smallest
    }

    private static func read(_ path: String) -> String? {
        (try? TextFile.readIfPresent(path)).flatMap { $0?.trimmedWhitespace }
    }

    /// "150000 100000" → 1.5; "max 100000" → nil.
    package static func parseCPUMax(_ text: String) -> Double? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 else { return nil }
        return quota / period
    }
}
