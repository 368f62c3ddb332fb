import CSocketKit
import Glibc
import SocketKit

/// One side of the relay: an AF_PACKET socket on a veth end in the relay's namespace. Frames the
/// side's kernel sends arrive on it; frames written to it go to that side's kernel.
///
/// veth, not TUN: /dev/net/tun may be root-only (0600 on this machine), while veth pairs and
/// packet sockets need only CAP_NET_ADMIN/CAP_NET_RAW over the namespace, which any user has
/// inside `unshare -Urn`.
struct RelayPort: Sendable {
    let fd: Int32
    let name: String

    /// Brings `name` up and opens the packet socket on it; called on a thread in the relay's
    /// namespace. C: `ioctl(SIOCSIFFLAGS)`, `socket(AF_PACKET)`,
    /// `setsockopt(PACKET_IGNORE_OUTGOING)`, `bind(sockaddr_ll)`.
    static func open(_ name: String) throws -> RelayPort {
        try Interface.up(name)
        let index = if_nametoindex(name)
        guard index > 0 else { throw SystemCallError(call: "if_nametoindex", errno: errno, subject: name) }
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let all = UInt16(CSocketKit_ETH_P_ALL)
        let fd = try syscall("socket(AF_PACKET)") { socket(AF_PACKET, type, Int32(all.bigEndian)) }
        do {
            var one: Int32 = 1
            _ = try syscall("setsockopt(PACKET_IGNORE_OUTGOING)") {
                setsockopt(fd, CSocketKit_SOL_PACKET, CSocketKit_PACKET_IGNORE_OUTGOING, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            // Straight to the driver: a veth's queueing discipline is a drop-all placeholder
            // until the kernel's link watcher activates it (up to a second after carrier on).
            _ = try syscall("setsockopt(PACKET_QDISC_BYPASS)") {
                setsockopt(fd, CSocketKit_SOL_PACKET, CSocketKit_PACKET_QDISC_BYPASS, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            var address = sockaddr_ll()
            address.sll_family = UInt16(AF_PACKET)
            address.sll_protocol = all.bigEndian
            address.sll_ifindex = Int32(index)
            _ = try withUnsafePointer(to: &address) { pointer in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try syscall("bind(AF_PACKET)") { bind(fd, sa, socklen_t(MemoryLayout<sockaddr_ll>.size)) }
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return RelayPort(fd: fd, name: name)
    }

    /// One frame, or nil when none is queued. C: `recv(2)`.
    func read(into buffer: inout [UInt8]) -> Int? {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? n : nil
    }

    /// Sends a whole frame out of the veth end, to the side's kernel. C: `send(2)`.
    @discardableResult
    func write(_ frame: [UInt8]) -> Bool {
        frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == frame.count
    }

    func close() { Glibc.close(fd) }
}

/// Interface set-up by ioctl on the calling thread's namespace.
enum Interface {
    static func withControlSocket<T>(_ body: (Int32) throws -> T) throws -> T {
        let control = try syscall("socket(AF_INET)") { socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { Glibc.close(control) }
        return try body(control)
    }

    static func up(_ name: String) throws {
        try withControlSocket { control in _ = try syscall("ioctl(SIOCSIFFLAGS)") { CSocketKit_if_up(control, name) } }
    }

    /// `address`/24, offloads off (whole checksums, no segments over the MTU), up; lo up too.
    static func configure(_ name: String, address: [UInt8]) throws {
        try withControlSocket { control in
            let host = address.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            let mask = [UInt8](arrayLiteral: 255, 255, 255, 0).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            _ = CSocketKit_if_no_offload(control, name)
            _ = try syscall("ioctl(SIOCSIFADDR)") { CSocketKit_if_configure(control, name, host, mask) }
            _ = try syscall("ioctl(SIOCSIFFLAGS)") { CSocketKit_if_up(control, "lo") }
        }
    }
}
