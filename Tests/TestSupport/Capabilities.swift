import Foundation
import Glibc

/// What this machine lets the suite do, each found by actually trying (once per run). A test
/// needing one is `.enabled(if:)` on it and skips with the reason: Docker, AppArmor's default
/// on Ubuntu, and missing tools refuse things a developer's laptop allows, and none of that is
/// a bug in SocketKit.
public enum Capabilities {
    public static var isRoot: Bool { geteuid() == 0 }

    /// The first executable of `names` found in the usual directories.
    public static func tool(_ names: String...) -> String? {
        for name in names {
            for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
                let path = dir + "/" + name
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
        }
        return nil
    }

    public static let unshare = tool("unshare")
    public static let ip = tool("ip")
    public static let prlimit = tool("prlimit")

    /// A private user + network namespace (`unshare -Urn`), as an unprivileged user may get.
    public static let userNetworkNamespaces: Bool = {
        guard let unshare else { return false }
        return succeeds(unshare, ["-Urn", "true"])
    }()

    /// A network namespace in which `ip` can bring lo up and add a route: `unshare -n` as root,
    /// `unshare -rn` (mapped root in a user namespace) otherwise.
    public static let networkNamespaceWithIP: Bool = {
        guard let unshare, let ip else { return false }
        return succeeds(unshare, networkNamespacePrefix.dropFirst() + [ip, "link", "set", "lo", "up"])
    }()

    /// `unshare` options for a network namespace this user can configure.
    public static var networkNamespacePrefix: [String] { [unshare ?? "/usr/bin/unshare", isRoot ? "-n" : "-rn"] }

    /// Runs a probe, bounded (10 s, then SIGKILL); true on exit 0.
    public static func succeeds(_ path: String, _ arguments: [String]) -> Bool {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: path)
        probe.arguments = arguments
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        guard (try? ChildProcess.withTerminationSignalsUnblocked({ try probe.run() })) != nil else { return false }
        if !ChildProcess.poll(timeout: 10, { !probe.isRunning }) {
            kill(probe.processIdentifier, SIGKILL)
            _ = ChildProcess.poll(timeout: 5) { !probe.isRunning }
            return false
        }
        return probe.terminationReason == .exit && probe.terminationStatus == 0
    }
}
