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

    /// Runs a probe through the one spawner (`ChildProcess`), bounded (10 s, then SIGTERM and
    /// SIGKILL); true on exit 0.
    public static func succeeds(_ path: String, _ arguments: [String]) -> Bool {
        guard let probe = try? ChildProcess(path, arguments) else { return false }
        return probe.finish(timeout: 10) == .exited(0) && probe.terminationReason == .exit
    }

    public static let setpriv = tool("setpriv")

    /// Root with setpriv: tests can run a program as nobody
    /// (`setpriv --reuid=65534 --regid=65534 --clear-groups`).
    public static var canDropPrivileges: Bool { isRoot && setpriv != nil }

    /// `canDropPrivileges`, and nobody can reach the built executables where they are (a
    /// checkout under a private home may not be; tests that copy the binary need only the former).
    public static var canRunBuiltExecutablesAsNobody: Bool {
        canDropPrivileges && nobodyCanExecute(Executables.url("EchoClient").path)
    }

    /// Every directory up to `path` has the others' search bit, and the file their execute bit.
    public static func nobodyCanExecute(_ path: String) -> Bool {
        var url = URL(fileURLWithPath: path)
        while url.path != "/" {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
                  let mode = attributes[.posixPermissions] as? Int else { return false }
            if mode & 0o001 == 0 { return false }
            url.deleteLastPathComponent()
        }
        return true
    }
}
