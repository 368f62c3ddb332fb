import Glibc
import SocketKit
import Synchronization

/// Asks the kernel to drop a file's cached pages below an offset, on a thread of its own.
///
/// `posix_fadvise(POSIX_FADV_DONTNEED)` starts writeback of the range's dirty pages, and ext4's
/// writeback can wait for the journal or a full device queue: measured 0.1–7.8 ms a call (8 MiB
/// ranges, connect churn), and in the shared bench long enough that the trace writer, making the
/// call itself, let its 1 MiB buffer fill and dropped 1,241–17,286 lines a run. Here the writer
/// only posts the new bound; requests that arrive while a call runs merge into the next one.
/// @unchecked: `requested`, `handled`, `stopping` and `thread` are guarded by `lock` (a pthread
/// mutex, which TSan sees); `refused` is an atomic.
final class PageDropper: @unchecked Sendable {
    private let fd: Int32
    /// Each call repeats this much below the previous bound: pages that were under writeback
    /// then, and only now clean.
    private let overlap: Int
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let settled = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    @exclusivity(unchecked) private var requested = 0
    @exclusivity(unchecked) private var handled = 0
    @exclusivity(unchecked) private var stopping = false
    @exclusivity(unchecked) private var thread: ThreadHandle?
    /// The kernel refused the advice (the descriptor is no file any more): nothing more is asked.
    let refused = Atomic<Bool>(false)

    /// Starts the thread. `fd` must stay open until `stop()` returns.
    init(fd: Int32, overlap: Int) throws {
        self.fd = fd
        self.overlap = overlap
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(settled, nil)
        do {
            thread = try ThreadHandle { [self] in run() }
        } catch {
            destroy()
            throw error
        }
    }

    deinit { destroy() }

    private func destroy() {
        pthread_cond_destroy(wake)
        pthread_cond_destroy(settled)
        pthread_mutex_destroy(lock)
        lock.deallocate()
        wake.deallocate()
        settled.deallocate()
    }

    /// Pages below `end` may go: never blocks.
    func drop(below end: Int) {
        pthread_mutex_lock(lock)
        if end > requested {
            requested = end
            pthread_cond_signal(wake)
        }
        pthread_mutex_unlock(lock)
    }

    /// Waits until every bound posted so far has been handled, at most `timeoutSeconds`; false
    /// on timeout (tests).
    func waitUntilSettled(timeoutSeconds: Double) -> Bool {
        let deadline = MonotonicClock.now() + UInt64(timeoutSeconds * 1e9)
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while handled < requested && !refused.load(ordering: .relaxed) {
            guard MonotonicClock.now() < deadline else { return false }
            var until = timespec.realtimeDeadline(afterNanoseconds: 10_000_000)
            _ = pthread_cond_timedwait(settled, lock, &until)
        }
        return true
    }

    /// Ends the thread after the call in progress, if any. Idempotent.
    func stop() {
        pthread_mutex_lock(lock)
        stopping = true
        pthread_cond_signal(wake)
        let thread = self.thread
        self.thread = nil
        pthread_mutex_unlock(lock)
        thread?.join()
    }

    private func run() {
        pthread_mutex_lock(lock)
        while true {
            while requested <= handled && !stopping { pthread_cond_wait(wake, lock) }
            if stopping { break }
            let end = requested
            let start = max(0, handled - overlap)
            pthread_mutex_unlock(lock)
            let failed = posix_fadvise(fd, off_t(start), off_t(end - start), POSIX_FADV_DONTNEED) != 0
            if failed { refused.store(true, ordering: .relaxed) }
            pthread_mutex_lock(lock)
            handled = end
            pthread_cond_broadcast(settled)
            if failed { break }
        }
        pthread_mutex_unlock(lock)
    }
}
