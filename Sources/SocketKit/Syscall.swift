import Glibc

/// Runs one system call: the single place where errno is captured and EINTR is handled.
///
/// errno is read once, immediately after the call returned -1, before anything else can
/// overwrite it. EINTR is retried unless the caller opts out; close(2) has its own rule
/// (`closeDescriptor`).
@inline(__always)
package func syscall<T: FixedWidthInteger>(
    _ call: StaticString,
    retryOnInterrupt: Bool = true,
    _ body: () -> T
) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR && retryOnInterrupt { continue }
        throw SystemCallError(call: call.description, errno: code)
    }
}

/// Like `syscall`, for non-blocking calls: EAGAIN/EWOULDBLOCK becomes `.wouldBlock`.
@inline(__always)
package func nonBlockingSyscall<T: FixedWidthInteger>(
    _ call: StaticString,
    _ body: () -> T
) throws(SystemCallError) -> IOResult<T> {
    while true {
        let result = body()
        if result != -1 { return .processed(result) }
        let code = errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
        throw SystemCallError(call: call.description, errno: code)
    }
}

/// close(2) with the one EINTR rule for it: never retried, counted as closed. Linux releases the
/// descriptor even when close() reports EINTR (LWN 576478), so a retry could close a descriptor
/// another thread has just been given.
package func closeDescriptor(_ fd: Int32, subject: String? = nil) throws(SystemCallError) {
    if Glibc.close(fd) == -1 {
        let code = errno
        if code != EINTR { throw SystemCallError(call: "close", errno: code, subject: subject) }
    }
}
