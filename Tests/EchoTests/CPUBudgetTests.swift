import Foundation
import Glibc
import Testing
@testable import EchoKit
import TestSupport

/// The server sizes its loops from the CPUs it may use (affinity mask, cgroup quota), and says so.
@Suite struct CPUBudgetTests {
    @Test func cpuMax_parsesQuotaOverPeriod() {
        #expect(CgroupQuota.parseCPUMax("150000 100000\n") == 1.5)
        #expect(CgroupQuota.parseCPUMax("50000 100000") == 0.5)
        #expect(CgroupQuota.parseCPUMax("max 100000") == nil)
        #expect(CgroupQuota.parseCPUMax("") == nil)
        #expect(CgroupQuota.parseCPUMax("100 0") == nil)
    }

    @Test func quotaRoundsUp_andAffinityCaps() {
        let budget = CPUBudget(allowedCPUs: [0, 1, 2, 3], onlineCPUs: 8, quotaCPUs: 1.5)
        #expect(budget.usableCPUs == 2)
        #expect(budget.describe(loops: 2, overridden: false) == "2 loops: cgroup quota 1.5 CPUs")
        let pinned = CPUBudget(allowedCPUs: [3], onlineCPUs: 4, quotaCPUs: nil)
        #expect(pinned.usableCPUs == 1)
        #expect(pinned.describe(loops: 1, overridden: false) == "1 loop: CPU 3 of 4 allowed")
        let loose = CPUBudget(allowedCPUs: [0, 1], onlineCPUs: 2, quotaCPUs: 4)
        #expect(loose.usableCPUs == 2)
        #expect(loose.describe(loops: 2, overridden: false) == "2 loops: 2 CPUs allowed")
        #expect(loose.describe(loops: 3, overridden: true) == "3 loops: --threads")
        #expect(CPUBudget(allowedCPUs: [0], onlineCPUs: 1, quotaCPUs: 0.2).usableCPUs == 1)
    }

    static let twoCPUs = sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2
    static let hasTaskset = FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")

    @Test(.enabled(if: twoCPUs, "one CPU online: pinning cannot shrink the loop count"),
          .enabled(if: hasTaskset, "taskset (util-linux) is not installed"))
    func underTaskset_theServerRunsOneLoop() throws {
        let line = try listeningLine(wrapper: ["/usr/bin/taskset", "-c", "0"])
        #expect(line.contains("(1 loop: CPU 0 of "), "listening line: \(line)")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to create a cgroup"),
          .enabled(if: TemporaryCPUGroup.supported, "no cgroup cpu controller (v2 cpu.max or v1 cpu.cfs_quota_us)"))
    func withACgroupQuota_theServerFollowsIt() throws {
        let group = try #require(TemporaryCPUGroup(quotaCPUs: 0.5), "could not create a cgroup with a quota as root")
        defer { group.remove() }
        let line = try listeningLine(wrapper: ["/bin/sh", "-c", "echo $$ > '\(group.procsFile)' && exec \"$0\" \"$@\""])
        #expect(line.contains("(1 loop: cgroup quota 0.5 CPUs)"), "listening line: \(line)")
    }

    /// Starts EchoServer without `--threads`, returns its "listening on" line, stops it.
    private func listeningLine(wrapper: [String]) throws -> String {
        let server = try ChildProcess("EchoServer", ["--port", "0", "--trace", "off"], wrapper: wrapper)
        defer { server.signal(SIGKILL); server.wait(timeout: 5) }
        let found = server.waitForStderr { $0.contains("listening on") }
        let text = server.stderrText
        try #require(found, "EchoServer printed no listening line within 10 s: \(text)")
        return text.split(separator: "\n").first { $0.contains("listening on") }.map(String.init) ?? ""
    }
}

/// A cgroup with a CPU quota, v2 where the cpu controller is there, else v1; removed after use.
private struct TemporaryCPUGroup {
    static var supported: Bool {
        FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
            || (try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.subtree_control", encoding: .utf8))?.contains("cpu") == true
    }

    let directory: String
    let procsFile: String

    init?(quotaCPUs: Double) {
        let name = "socketkit-test-\(getpid())"
        let fm = FileManager.default
        let period = 100_000
        let quota = Int(quotaCPUs * Double(period))
        let v2 = "/sys/fs/cgroup/cpu.max"
        if !fm.fileExists(atPath: v2), fm.fileExists(atPath: "/sys/fs/cgroup/cgroup.subtree_control"),
           (try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.subtree_control", encoding: .utf8))?.contains("cpu") == true {
            directory = "/sys/fs/cgroup/" + name
            guard mkdir(directory, 0o755) == 0,
                  Self.write("\(quota) \(period)", to: directory + "/cpu.max") else { return nil }
        } else if fm.fileExists(atPath: "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") {
            directory = "/sys/fs/cgroup/cpu/" + name
            guard mkdir(directory, 0o755) == 0,
                  Self.write(String(period), to: directory + "/cpu.cfs_period_us"),
                  Self.write(String(quota), to: directory + "/cpu.cfs_quota_us") else { return nil }
        } else {
            return nil
        }
        procsFile = directory + "/cgroup.procs"
    }

    private static func write(_ text: String, to path: String) -> Bool {
        (try? text.write(toFile: path, atomically: false, encoding: .utf8)) != nil
    }

    /// rmdir succeeds once the last member has exited; the server was SIGKILLed and reaped.
    func remove() {
        for _ in 0..<100 where rmdir(directory) != 0 { usleep(10_000) }
    }
}
