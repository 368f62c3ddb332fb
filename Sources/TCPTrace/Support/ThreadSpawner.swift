import Glibc
import SocketKit
import Synchronization

/// Starts a joinable pthread running `body`; join with `ThreadHandle.join()`.
/// Foundation's Thread would do, but the library stays on Glibc alone. In TCPTrace, not
/// SocketKit: a thread is not a socket call (the tracer's reader and writer, the engines' loops).
public final class ThreadHandle: Sendable {
    private let thread: pthread_t
    private let finished: Finished

    private final class Finished: Sendable {
        let flag = Atomic<Bool>(false)
    }

    /// Starts a joinable thread running `body`. C: `pthread_create(3)`.
    public init(_ body: @escaping @Sendable () -> Void) throws {
        let finished = Finished()
        let box = Unmanaged.passRetained(Box {
            body()
            finished.flag.store(true, ordering: .releasing)
        }).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw SystemCallError(call: "pthread_create", errno: rc)
        }
        self.thread = thread
        self.finished = finished
    }

    /// Waits for the thread to end. C: `pthread_join(3)`.
    public func join() {
        pthread_join(thread, nil)
    }

    /// Waits at most `timeoutSeconds` for the thread's body to return, then joins it; false
    /// (and not joined) when it is still running. For callers that must not hang on a stuck
    /// thread: the tests, hence `package`, not public API.
    package func join(timeoutSeconds: Double) -> Bool {
        let deadline = MonotonicClock.now() + UInt64(max(0, timeoutSeconds) * 1e9)
        while !finished.flag.load(ordering: .acquiring) {
            if MonotonicClock.now() >= deadline { return false }
            usleep(1_000)
        }
        pthread_join(thread, nil)
        return true
    }

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
