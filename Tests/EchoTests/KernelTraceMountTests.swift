import Foundation
import Testing
import TestSupport

/// tracefs is mounted only with an explicit `--kernel-trace on`, which says so; `auto` and the
/// availability probe use it only where it is already mounted (issue 19, item 4). Run in a
/// private mount namespace with tracefs unmounted, so the host is never touched.
@Suite(.serialized) struct KernelTraceMountTests {
    /// Unmounts tracefs in the namespace, runs the program, then prints how many tracefs mounts
    /// the namespace has once it exited.
    static let script = "umount /sys/kernel/tracing 2>/dev/null; \"$0\" \"$@\"; status=$?; "
        + "echo \"tracefs mounts after: $(grep -c ' /sys/kernel/tracing tracefs ' /proc/self/mounts)\"; exit $status"

    /// Root, unshare, and a kernel with the tracepoint (tracefs mounted on the host, as usual).
    static let possible = Capabilities.isRoot && Capabilities.unshare != nil
        && FileManager.default.fileExists(atPath: "/sys/kernel/tracing/events/sock/inet_sock_set_state")
    static let requirement: Comment = "needs root, unshare (a private mount namespace) and the sock:inet_sock_set_state tracepoint"

    static func demo(_ mode: String) throws -> (status: Int32, output: String) {
        let child = try ChildProcess("EchoClient", ["--demo", "--kernel-trace", mode, "--wire", "off", "--no-color"],
                                     wrapper: [Capabilities.unshare ?? "/usr/bin/unshare", "-m", "/bin/sh", "-c", script])
        let status = child.wait(timeout: 60)
        return (status, child.stdoutText + child.stderrText)
    }

    @Test("--kernel-trace auto where tracefs is not mounted: falls back, says why, mounts nothing",
          .enabled(if: KernelTraceMountTests.possible, KernelTraceMountTests.requirement))
    func autoNeverMounts() throws {
        let run = try Self.demo("auto")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("kernel trace unavailable (tracefs not mounted at /sys/kernel/tracing (only --kernel-trace on mounts it))"),
                "\(run.output)")
        #expect(run.output.contains("tracefs mounts after: 0"), "\(run.output)")
    }

    @Test("--kernel-trace on where tracefs is not mounted: mounts it and says so",
          .enabled(if: KernelTraceMountTests.possible, KernelTraceMountTests.requirement))
    func onMountsAndSaysSo() throws {
        let run = try Self.demo("on")
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("mounted tracefs on /sys/kernel/tracing for it (--kernel-trace on)"), "\(run.output)")
        #expect(run.output.contains("tracefs mounts after: 1"), "\(run.output)")
    }
}
