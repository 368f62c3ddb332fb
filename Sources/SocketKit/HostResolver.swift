import Glibc

/// A host name that could not be resolved (getaddrinfo's own error space, not errno).
public struct ResolutionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The name that did not resolve.
    public let host: String
    /// The getaddrinfo(3) EAI_* code.
    public let code: Int32

    /// `resolve(name): gai_strerror text`.
    public var description: String {
        let reason = gai_strerror(code).map { String(cString: $0) } ?? "error \(code)"
        return "getaddrinfo(\(host)): \(reason)"
    }
}

/// Names to addresses, numeric ones without a lookup. C: `getaddrinfo(3)`.
public enum HostResolver {
    /// Resolves `host` (a literal, `localhost`, or a name) to socket addresses for TCP.
    /// Literals never touch the resolver. C: `getaddrinfo`.
    public static func resolve(_ host: String, port: UInt16) throws -> [SocketAddress] {
        if let literal = SocketAddress(numericHost: host, port: port) { return [literal] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else { throw ResolutionError(host: host, code: rc) }
        defer { freeaddrinfo(first) }
        var result: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let current = node {
            if let sa = current.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(current.pointee.ai_addrlen)))
                }
                if let address = SocketAddress(storage: storage), !result.contains(address) {
                    result.append(address)
                }
            }
            node = current.pointee.ai_next
        }
        if result.isEmpty { throw ResolutionError(host: host, code: EAI_NONAME) }
        return result
    }
}
