import SocketKit

extension Socket {
    /// Sends our FIN with `shutdown(SHUT_WR)` and records it, in the one order that keeps the
    /// trace right: the TIME_WAIT overflow baseline before the call (on loopback the whole close
    /// can finish inside it), the FIN noted after it succeeded, then the state read while the fd
    /// still exists (FIN_WAIT_1/2, LAST_ACK or already CLOSED). Every engine sends its FIN here.
    /// C: `shutdown(SHUT_WR)`, then `getsockopt(TCP_INFO)`.
    package func sendFIN(tracedBy tracker: SocketTracker?, cause: @autoclosure () -> String) throws {
        tracker?.willSendFIN()
        let started = tracker?.syscallStart()
        try shutdown(.write)
        tracker?.syscall("shutdown(fd \(fd), SHUT_WR) = 0", startedAt: started)
        tracker?.noteOurFIN()
        tracker?.observe(self, cause: cause())
    }
}
