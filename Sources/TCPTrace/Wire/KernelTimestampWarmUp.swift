import CSocketKit
import Glibc
import SocketKit

/// Makes sure the kernel stamps packets on arrival before a capture relies on it.
///
/// SO_TIMESTAMPNS turns on receive timestamps through a static key the kernel flips in deferred
/// work (net_enable_timestamp → schedule_work): for the first ~1-2 ms after the option is set,
/// skbs arrive unstamped and recvmsg() stamps them with the time of the *read*. Measured: the
/// demo's first five segments carried the drain time, after the whole exchange. So the capture
/// waits until a datagram sent to itself over lo carries a stamp older than its read.
enum KernelTimestampWarmUp {
    /// Bounded: at most `tries` datagrams, each awaited up to 2 s. Returns whether stamping was seen on.
    @discardableResult
    static func ensure(tries: Int = 50) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var on: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, CSocketKit_SO_TIMESTAMPNS, &on, socklen_t(MemoryLayout<Int32>.size)) == 0,
              var address = SocketAddress(numericHost: "127.0.0.1", port: 0),
              address.withSockAddr({ Glibc.bind(fd, $0, $1) }) == 0
        else { return false }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        address = SocketAddress(storage: storage) ?? address
        var payload: UInt8 = 0
        var control = [UInt8](repeating: 0, count: Int(CSocketKit_TIMESTAMP_CONTROL_SPACE) + 16)
        for _ in 0..<tries {
            _ = address.withSockAddr { sendto(fd, &payload, 1, 0, $0, $1) }
            var arrival = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&arrival, 1, 2000) == 1 else { return false }
            usleep(500)                 // arrived: a stamp taken on arrival is now ≥ 0.5 ms old
            let readAt = MonotonicClock.wallNow()
            var stamp: Int64 = 0
            let got = control.withUnsafeMutableBytes { controlBytes -> Bool in
                var byte: UInt8 = 0
                return withUnsafeMutablePointer(to: &byte) { bytePointer in
                    var vector = iovec(iov_base: bytePointer, iov_len: 1)
                    return withUnsafeMutablePointer(to: &vector) { iov in
                        var message = msghdr(msg_name: nil, msg_namelen: 0, msg_iov: iov, msg_iovlen: 1,
                                             msg_control: controlBytes.baseAddress, msg_controllen: controlBytes.count, msg_flags: 0)
                        guard recvmsg(fd, &message, Int32(MSG_DONTWAIT)) == 1 else { return false }
                        var seconds: Int64 = 0, nanoseconds: Int64 = 0
                        guard CSocketKit_timestampns(&message, &seconds, &nanoseconds) == 1 else { return false }
                        stamp = seconds * 1_000_000_000 + nanoseconds
                        return true
                    }
                }
            }
            // Stamped on arrival: at least ~0.4 ms older than the read (the 0.5 ms sleep).
            if got && readAt - stamp > 300_000 { return true }
        }
        return false
    }
}
