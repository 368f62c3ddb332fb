import CSocketKit
import Glibc
import SocketKit

/// Which interface carries a connection, so the capture listens on the right one.
///
/// Linux routes every packet between two of its own addresses through `lo`, whatever interface
/// owns them; only a remote peer's traffic crosses the interface that owns the local address.
public enum WireInterface {
    /// The interface for a socket bound to `local` talking to `peer` (nil: not known yet, e.g.
    /// a listener). Returns the name and, when it had to guess, why.
    public static func carrying(local: SocketAddress?, peer: SocketAddress?) -> (name: String, note: String?) {
        let addresses = localAddresses()
        if let peer, peer.isLoopback || addresses[peer.addressBytes] != nil { return ("lo", nil) }
        guard let local else { return ("lo", nil) }
        if local.isLoopback { return ("lo", nil) }
        if local.addressBytes.allSatisfy({ $0 == 0 }) {
            return ("lo", "listening on every address: only loopback connections are captured")
        }
        if let name = addresses[local.addressBytes] { return (name, nil) }
        return ("lo", "no interface owns \(local.host); capturing on lo")
    }

    /// The source address the kernel would pick to reach `peer` (a UDP connect() sends nothing).
    public static func sourceAddress(toward peer: SocketAddress) -> SocketAddress? {
        let fd = socket(peer.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        guard peer.withSockAddr({ Glibc.connect(fd, $0, $1) }) == 0 else { return nil }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return named == 0 ? SocketAddress(storage: storage) : nil
    }

    /// Every address of this host, to the interface that owns it. C: `getifaddrs(3)`.
    static func localAddresses() -> [[UInt8]: String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [:] }
        defer { freeifaddrs(list) }
        var result: [[UInt8]: String] = [:]
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard let address = current.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var storage = sockaddr_storage()
            let size = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: size)) }
            if let socketAddress = SocketAddress(storage: storage) {
                result[socketAddress.addressBytes] = String(cString: current.pointee.ifa_name)
            }
        }
        return result
    }
}
