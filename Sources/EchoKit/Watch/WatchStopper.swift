import CSocketKit
import Glibc
import SocketKit
import Synchronization

/// Stops a `WatchRun` from another thread (the signal thread): an atomic flag the loop checks,
/// and an eventfd in the loop's poll set that wakes it at once. Immutable apart from the atomic,
/// so it is Sendable as checked by the compiler, and the run itself needs not be.
public final class WatchStopper: Sendable {
    private let flag = Atomic<Bool>(false)
    let wake: Int32

    init() throws {
        wake = try syscall("eventfd") { CSocketKit_eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) }
    }

    deinit { Glibc.close(wake) }

    /// Sets the flag and wakes the loop: it finishes within one wait. C: `write(eventfd)`.
    public func requestStop() {
        markStopping()
        var one: UInt64 = 1
        _ = Glibc.write(wake, &one, 8)
    }

    func markStopping() { flag.store(true, ordering: .releasing) }

    var isStopping: Bool { flag.load(ordering: .acquiring) }
}
