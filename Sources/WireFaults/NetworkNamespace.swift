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
public final class NetworkNamespace: @unchecked Sendable {
    public let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { Glibc.close(fd) }

    /// A fresh network namespace (only lo, down). Needs CAP_SYS_ADMIN over the current user
    /// namespace: root, or any user inside `unshare -Urn`. C: `unshare(CLONE_NEWNET)` on a
    /// thread of its own, then `open("/proc/thread-self/ns/net")`.
    public static func create() throws -> NetworkNamespace {
        let opened = Transfer<Result<Int32, SystemCallError>>(.failure(SystemCallError(call: "unshare(CLONE_NEWNET)", errno: EAGAIN)))
        let thread = try ThreadHandle {
            do throws(SystemCallError) {
                _ = try syscall("unshare(CLONE_NEWNET)") { CSocketKit_unshare_net() }
                let fd = try syscall("open(/proc/thread-self/ns/net)") { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) }
                opened.value = .success(fd)
            } catch {
                opened.value = .failure(error)
            }
        }
        thread.join()
        return NetworkNamespace(fd: try opened.value.get())
    }

    /// The calling thread's namespace. C: `open("/proc/thread-self/ns/net")`.
    public static func current() throws -> NetworkNamespace {
        NetworkNamespace(fd: try syscall("open(/proc/thread-self/ns/net)") { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) })
    }

    /// Runs `body` on a thread inside this namespace and returns its result: sockets and TUN
    /// devices it creates live here. The thread ends with `body`. C: `setns(fd, CLONE_NEWNET)`.
    public func run<T>(_ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { escapable in
            let work = Transfer(escapable)
            let result = Transfer<Result<T, Error>?>(nil)
            let fd = self.fd
            let thread = try ThreadHandle {
                do {
                    _ = try syscall("setns(CLONE_NEWNET)") { CSocketKit_setns_net(fd) }
                    result.value = .success(try work.value())
                } catch {
                    result.value = .failure(error)
                }
            }
            thread.join()
            guard let outcome = result.value else { throw SystemCallError(call: "setns(CLONE_NEWNET)", errno: ESRCH) }
            return try outcome.get()
        }
    }
}

/// Hands a value to a thread that is joined before the value is read again: the join orders
/// the accesses, which the compiler cannot see.
final class Transfer<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
