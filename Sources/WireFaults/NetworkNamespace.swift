import CSocketKit
import Glibc
import SocketKit

/// A network namespace of our own, kept alive by an fd on its `ns/net` file.
///
/// The network namespace belongs to a thread, not to the process: `unshare(CLONE_NEWNET)` and
/// `setns()` move only the calling thread, and a socket stays in the namespace it was created
/// in whoever uses it later. So one process can hold the client's sockets in one namespace and
/// the server's in another: each side's sockets are created on a short-lived thread that first
/// enters that side's namespace (`run`), and are then used from any thread.
public final class NetworkNamespace: Sendable {
    public let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { Glibc.close(fd) }

    /// A fresh network namespace (only lo, down). Needs CAP_SYS_ADMIN over the current user
    /// namespace: root, or any user inside `unshare -Urn`. C: `unshare(CLONE_NEWNET)` on the
    /// calling thread, `open("/proc/thread-self/ns/net")`, then `setns()` back to where the
    /// thread was (the namespace is per thread, so the rest of the process never moves).
    public static func create() throws -> NetworkNamespace {
        let home = try current()
        _ = try syscall("unshare(CLONE_NEWNET)") { CSocketKit_unshare_net() }
        defer { home.enterOrDie() }
        return try current()
    }

    /// The calling thread's namespace. C: `open("/proc/thread-self/ns/net")`.
    public static func current() throws -> NetworkNamespace {
        NetworkNamespace(fd: try syscall("open(/proc/thread-self/ns/net)") { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) })
    }

    /// Runs `body` on the calling thread inside this namespace, then moves the thread back:
    /// sockets and devices `body` creates live here. No second thread, so nothing crosses
    /// threads. C: `setns(fd, CLONE_NEWNET)`, twice.
    public func run<T>(_ body: () throws -> T) throws -> T {
        let home = try Self.current()
        _ = try syscall("setns(CLONE_NEWNET)") { CSocketKit_setns_net(fd) }
        defer { home.enterOrDie() }
        return try body()
    }

    /// Moves the calling thread back into this namespace. A thread left in the wrong namespace
    /// would create the next sockets there, silently: stopping is the only honest outcome (it
    /// cannot fail for a namespace this thread was in a moment ago, as its owner).
    private func enterOrDie() {
        guard CSocketKit_setns_net(fd) == 0 else {
            let message = "setns(CLONE_NEWNET) back to the thread's own namespace: \(Errno.message(errno))\n"
            _ = message.withCString { Glibc.write(2, $0, strlen($0)) }
            _exit(71)
        }
    }
}
