import CSocketKit
import Glibc
import SocketKit

/// A TUN device (IFF_TUN | IFF_NO_PI): every IP packet the namespace routes to it is read from
/// `fd`, and every packet written to `fd` is received by the namespace as if from a wire.
/// Non-persistent: closing the fd deletes the device and its route.
struct TunDevice: @unchecked Sendable {
    let fd: Int32
    let name: String

    /// Creates the device in the calling thread's network namespace, gives it `address`/24 and
    /// brings it (and that namespace's lo) up. /dev/net/tun is 0666; TUNSETIFF needs
    /// CAP_NET_ADMIN over the namespace, which root and a user inside `unshare -Urn` have.
    /// C: `open(/dev/net/tun)`, `ioctl(TUNSETIFF)`, `ioctl(SIOCSIFADDR/SIOCSIFNETMASK/SIOCSIFFLAGS)`.
    static func create(name: String, address: [UInt8]) throws -> TunDevice {
        let fd = try syscall("open(/dev/net/tun)") { open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC) }
        do {
            _ = try syscall("ioctl(TUNSETIFF)") { CSocketKit_tun_attach(fd, name) }
            let control = try syscall("socket(AF_INET)") { socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            defer { Glibc.close(control) }
            let host = address.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            let mask = [UInt8](arrayLiteral: 255, 255, 255, 0).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            _ = try syscall("ioctl(SIOCSIFADDR)") { CSocketKit_if_configure(control, name, host, mask) }
            _ = try syscall("ioctl(SIOCSIFFLAGS)") { CSocketKit_if_up(control, "lo") }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return TunDevice(fd: fd, name: name)
    }

    /// One packet, or nil when none is queued. C: `read(2)`.
    func read(into buffer: inout [UInt8]) -> Int? {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? n : nil
    }

    /// Hands a packet to the namespace. C: `write(2)`; a TUN write is all or nothing.
    @discardableResult
    func write(_ packet: [UInt8]) -> Bool {
        packet.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == packet.count
    }

    func close() { Glibc.close(fd) }
}
