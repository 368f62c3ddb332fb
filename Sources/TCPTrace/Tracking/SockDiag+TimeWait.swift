import Glibc
import SocketKit

extension SockDiag {
    /// `lookup`, confirming a "gone" or CLOSED answer for a socket on its way to TIME_WAIT.
    ///
    /// - Parameter expectingTimeWait: the socket was last seen on its way to TIME_WAIT (our FIN
    ///   first, no reset). tcp_time_wait() swaps a TIME_WAIT mini-socket into the hash table and
    ///   then destroys the full socket; a lockless lookup in that window can miss both, or catch
    ///   the full socket already in CLOSE. Measured against the kernel tracepoint: 4 of 200
    ///   server-side active closes lost their TIME_WAIT this way while TCPTimeWaitOverflow did
    ///   not move. Such an answer is confirmed by asking again for ~0.2 ms; others pay nothing.
    ///   It sleeps meanwhile: never call this with `true` on an event loop's thread.
    public func lookup(local: SocketAddress, peer: SocketAddress, cookie: UInt64?,
                       expectingTimeWait: Bool) throws -> SockDiagEntry? {
        var entry = try lookup(local: local, peer: peer, cookie: cookie)
        var tries = 0
        while expectingTimeWait, entry == nil || entry?.state == .closed, tries < 5 {
            tries += 1
            usleep(UInt32(10 * tries))
            entry = try lookup(local: local, peer: peer, cookie: cookie)
        }
        return entry
    }
}
