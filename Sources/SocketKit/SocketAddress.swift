import Glibc

/// An IPv4 or IPv6 socket address. Text form: `127.0.0.1:7007`, `[::1]:7007`.
public enum SocketAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(sockaddr_in)
    case v6(sockaddr_in6)

    /// A numeric address (`127.0.0.1`, `::1`, `[::1]`); nil if `host` is not a literal.
    public init?(numericHost host: String, port: UInt16) {
        var text = host
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, text, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            self = .v4(v4)
            return
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, text, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            self = .v6(v6)
            return
        }
        return nil
    }

    /// Parses `HOST:PORT`, `[V6]:PORT` (numeric hosts only).
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"),
              let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        let host = String(text[..<colon])
        if host.contains(":") && !host.hasPrefix("[") { return nil }  // bare v6 needs brackets
        self.init(numericHost: host, port: port)
    }

    /// Converts a kernel-filled `sockaddr_storage`; nil for families other than IPv4/IPv6.
    public init?(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self = withUnsafeBytes(of: &storage) { .v4($0.load(as: sockaddr_in.self)) }
        case AF_INET6:
            self = withUnsafeBytes(of: &storage) { .v6($0.load(as: sockaddr_in6.self)) }
        default:
            return nil
        }
    }

    /// From inet_diag's layout (`idiag_src`/`idiag_dst`: 16 address bytes, IPv4 in the first
    /// four; the port in network order); nil for other families. The inverse of `addressBytes`.
    public init?(family: Int32, inetDiag address: (UInt32, UInt32, UInt32, UInt32), port networkPort: UInt16) {
        var address = address
        switch family {
        case AF_INET:
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = networkPort
            a.sin_addr.s_addr = address.0   // both in network order
            self = .v4(a)
        case AF_INET6:
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = networkPort
            withUnsafeMutableBytes(of: &a.sin6_addr) { target in withUnsafeBytes(of: &address) { target.copyMemory(from: $0) } }
            self = .v6(a)
        default:
            return nil
        }
    }

    /// AF_INET or AF_INET6.
    public var family: Int32 {
        switch self {
        case .v4: return AF_INET
        case .v6: return AF_INET6
        }
    }

    /// The port in host byte order.
    public var port: UInt16 {
        get {
            switch self {
            case .v4(let a): return UInt16(bigEndian: a.sin_port)
            case .v6(let a): return UInt16(bigEndian: a.sin6_port)
            }
        }
        set {
            switch self {
            case .v4(var a): a.sin_port = newValue.bigEndian; self = .v4(a)
            case .v6(var a): a.sin6_port = newValue.bigEndian; self = .v6(a)
            }
        }
    }

    /// The address without the port (`127.0.0.1`, `::1`).
    public var host: String {
        switch self {
        case .v4(let a):
            return String(unsafeUninitializedCapacity: 15) { Self.writeIPv4(a.sin_addr, into: $0) }
        case .v6(var a):
            return String(unsafeUninitializedCapacity: Int(INET6_ADDRSTRLEN)) { out in
                out.withMemoryRebound(to: CChar.self) { chars in
                    guard let base = chars.baseAddress,
                          inet_ntop(AF_INET6, &a.sin6_addr, base, socklen_t(chars.count)) != nil else { return 0 }
                    return strlen(base)
                }
            }
        }
    }

    /// Dotted quad without inet_ntop's printf: a traced server formats two addresses per
    /// connection (inet_ntop + arrays + interpolation measured ~8,000 instructions a connection).
    private static func writeIPv4(_ address: in_addr, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var count = 0
        withUnsafeBytes(of: address.s_addr) { bytes in   // network order: the first byte first
            for (index, byte) in bytes.enumerated() {
                if index > 0 { out[count] = UInt8(ascii: "."); count += 1 }
                if byte >= 100 { out[count] = UInt8(ascii: "0") + byte / 100; count += 1 }
                if byte >= 10 { out[count] = UInt8(ascii: "0") + byte / 10 % 10; count += 1 }
                out[count] = UInt8(ascii: "0") + byte % 10; count += 1
            }
        }
        return count
    }

    /// The 16 address bytes in network order, IPv4 in the first four (inet_diag's layout).
    public var addressBytes: [UInt8] {
        switch self {
        case .v4(var a): return withUnsafeBytes(of: &a.sin_addr) { Array($0) } + [UInt8](repeating: 0, count: 12)
        case .v6(var a): return withUnsafeBytes(of: &a.sin6_addr) { Array($0) }
        }
    }

    /// INADDR_ANY or in6addr_any (port aside): a listener bound there accepts on any address.
    public var isWildcard: Bool {
        switch self {
        case .v4(let a): return a.sin_addr.s_addr == 0
        case .v6(var a): return withUnsafeBytes(of: &a.sin6_addr) { $0.allSatisfy { $0 == 0 } }
        }
    }

    /// 127.0.0.0/8, ::1 or an IPv4-mapped loopback address.
    public var isLoopback: Bool {
        switch self {
        case .v4: return host.hasPrefix("127.")
        case .v6: return host == "::1" || host.hasPrefix("::ffff:127.")
        }
    }

    /// `127.0.0.1:7007` or `[::1]:7007`.
    public var description: String {
        switch self {
        case .v4(let a):
            // In one buffer: two per traced connection (interpolation was ~900 instructions each).
            // On the stack, then copied: up to 15 bytes (`127.0.0.1:54321`) a String holds
            // inline, so no allocation (String(unsafeUninitializedCapacity: 21) always made one,
            // and its release later; ~600 instructions a connection, callgrind).
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 21) { out in
                var count = Self.writeIPv4(a.sin_addr, into: out)
                out[count] = UInt8(ascii: ":"); count += 1
                var digits = 1
                var rest = port / 10
                while rest > 0 { digits += 1; rest /= 10 }
                var value = port
                for index in stride(from: count + digits - 1, through: count, by: -1) {
                    out[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                return String(decoding: UnsafeBufferPointer(rebasing: out[0..<(count + digits)]), as: UTF8.self)
            }
        case .v6: return "[\(host)]:\(port)"
        }
    }

    /// Calls `body` with a `sockaddr` pointer and length for bind/connect.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch self {
        case .v4(var a):
            return try withUnsafePointer(to: &a) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6(var a):
            return try withUnsafePointer(to: &a) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    /// Same family, address and port.
    /// Family, port and address bytes, compared in place (`addressBytes` builds arrays).
    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)):
            return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr
        case (.v6(var a), .v6(var b)):
            return a.sin6_port == b.sin6_port
                && withUnsafeBytes(of: &a.sin6_addr) { x in withUnsafeBytes(of: &b.sin6_addr) { y in x.elementsEqual(y) } }
        default:
            return false
        }
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(family)
        hasher.combine(port)
        hasher.combine(addressBytes)
    }
}

