import Glibc

/// Starts a detached-free pthread running `body`; join with `ThreadHandle.join()`.
/// Foundation's Thread would do, but the library stays on Glibc alone.
public final class ThreadHandle: Sendable {
    private let thread: pthread_t

    /// Starts a joinable thread running `body`. C: `pthread_create(3)`.
    public init(_ body: @escaping @Sendable () -> Void) throws {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
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
    }

    /// Waits for the thread to end. C: `pthread_join(3)`.
    public func join() {
        pthread_join(thread, nil)
    }

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
