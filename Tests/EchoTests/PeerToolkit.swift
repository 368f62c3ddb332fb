import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// A blocking IPv4 loopback peer for robustness tests: well-behaved or hostile on purpose.
/// Every call is bounded by SO_RCVTIMEO/SO_SNDTIMEO so a broken server fails a test, never hangs it.
final class TestPeer: @unchecked Sendable {
    private(set) var fd: Int32

    init(port: UInt16, host: String = "127.0.0.1", timeoutSeconds: Double = 10, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket", errno: errno) }
        if let receiveBuffer { setInt(SOL_SOCKET, SO_RCVBUF, receiveBuffer) }
        setTimeout(timeoutSeconds)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0 {
            let code = errno
            Glibc.close(fd)
            fd = -1
            throw SystemCallError(call: "connect", errno: code)
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    func setTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func setInt(_ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    var localPort: UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "send", errno: errno)
            }
            offset += n
        }
    }

    /// Reads exactly `count` bytes (throws on EOF, timeout or error).
    func receive(exactly count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "recv", errno: errno)
            }
            if n == 0 { throw HarnessError("EOF after \(offset) of \(count) bytes") }
            offset += n
        }
        return out
    }

    /// Reads until EOF; returns the bytes and the errno that ended it (nil for a clean EOF).
    func receiveToEnd(limit: Int = 64 << 20) -> (bytes: [UInt8], errno: Int32?) {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                return (out, errno)
            }
            if n == 0 { return (out, nil) }
            out += buffer[0..<n]
        }
        return (out, nil)
    }

    func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// close() with SO_LINGER 0: the kernel sends RST instead of FIN.
    func abort() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    /// One message, its exact echo, half-close, EOF. The well-behaved client of every test.
    static func echoRoundTrip(port: UInt16, size: Int = 4096, seed: UInt64 = 1) throws -> Bool {
        let peer = try TestPeer(port: port)
        let message = Bytes.pattern(count: size, seed: seed)
        try peer.send(message)
        let echo = try peer.receive(exactly: message.count)
        peer.shutdownWrite()
        let rest = peer.receiveToEnd()
        peer.close()
        return echo == message && rest.bytes.isEmpty && rest.errno == nil
    }
}

enum Bytes {
    /// Deterministic bytes covering every value 0...255 (NULs, ESC, invalid UTF-8 included).
    static func pattern(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }
}

/// A plain listener owned by the test: the "server" for client-side failure tests.
final class TestListener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16

    init(backlog: Int32 = 16) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, backlog) == 0 else {
            Glibc.close(fd)
            throw SystemCallError(call: "bind/listen", errno: errno)
        }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { Glibc.close(fd) }

    /// Accepts one peer, reads its first bytes, then resets the connection (SO_LINGER {1, 0}
    /// and close): the peer's next call sees ECONNRESET.
    func acceptReadOnceAndReset() throws {
        let fd = try accept()
        var buffer = [UInt8](repeating: 0, count: 64)
        _ = recv(fd, &buffer, 64, 0)
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(fd)
    }

    /// Blocking accept (bounded by a poll timeout).
    func accept(timeoutSeconds: Double = 10) throws -> Int32 {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(timeoutSeconds * 1000)) == 1 else { throw HarnessError("nothing to accept") }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw SystemCallError(call: "accept", errno: errno) }
        return client
    }
}

/// Figures read from /proc/<pid>: what the robustness tests bound.
enum ProcStats {
    static func status(_ pid: Int32, _ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return Int(line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    // A figure that cannot be read is a failed expectation, never a quiet -1: two -1s compare
    // equal, and a leak check would pass without having measured anything (issue 14).
    static func rssKiB(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        measured(status(pid, "VmRSS"), "VmRSS of \(pid)", sourceLocation)
    }
    static func threads(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        measured(status(pid, "Threads"), "Threads of \(pid)", sourceLocation)
    }
    static func fdCount(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        measured(try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count,
                 "/proc/\(pid)/fd", sourceLocation)
    }

    /// Open TCP sockets only (fd inodes that inet_diag lists). The trace follower and the
    /// signal/epoll set-up hold a few other descriptors (epoll, eventfd, signalfd, netlink),
    /// so the total count is noisy while the TCP socket count is exact.
    static func socketCount(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else {
            return measured(nil, "/proc/\(pid)/fd", sourceLocation)
        }
        let diag: SockDiag
        do { diag = try SockDiag() } catch {
            return measured(nil, "sock_diag (\(error))", sourceLocation)
        }
        var tcpInodes: Set<String> = []
        for family in [AF_INET, AF_INET6] {
            do {
                for entry in try diag.dump(family: family) where entry.inode != 0 { tcpInodes.insert("socket:[\(entry.inode)]") }
            } catch {
                return measured(nil, "sock_diag dump (\(error))", sourceLocation)
            }
        }
        return names.filter {
            tcpInodes.contains((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) ?? "")
        }.count
    }

    private static func measured(_ value: Int?, _ what: String, _ sourceLocation: SourceLocation) -> Int {
        if let value { return value }
        Issue.record("cannot measure \(what): the check would prove nothing", sourceLocation: sourceLocation)
        return -1
    }

    /// utime + stime in clock ticks (fields 14 and 15 of /proc/<pid>/stat). Unreadable: a
    /// failed expectation (and -1), never a figure a comparison could pass with.
    static func cpuTicks(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        measured(readCPUTicks(pid), "CPU time of \(pid) (/proc/\(pid)/stat)", sourceLocation)
    }

    static func readCPUTicks(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3): utime is field 14 → index 11.
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    /// Whether `signo` is ignored by `pid` (the SigIgn mask in /proc/<pid>/status).
    static func ignores(_ pid: Int32, signal signo: Int32, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("SigIgn:") }),
              let mask = UInt64(line.dropFirst("SigIgn:".count).trimmingCharacters(in: .whitespaces), radix: 16) else {
            Issue.record("cannot read SigIgn of \(pid)", sourceLocation: sourceLocation)
            return false
        }
        return mask & (1 << UInt64(signo - 1)) != 0
    }

    /// "fd → target" for every descriptor (diagnostics).
    static func fdTargets(_ pid: Int32) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return names.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map {
            "\($0)→" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) ?? "?")
        }
    }

    static var ticksPerSecond: Int { sysconf(Int32(_SC_CLK_TCK)) }
}

/// Runs `body` on `count` dedicated threads and waits for all, at most `timeoutSeconds` (the
/// bodies bound their own calls; past the bound the test fails naming what hung, and the
/// threads are left behind rather than the suite hung). Not Dispatch: its pool may run only a
/// couple of blocking bodies at once.
func concurrently(_ count: Int, timeoutSeconds: Double = 120, sourceLocation: SourceLocation = #_sourceLocation,
                  _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        Thread.detachNewThread {
            body(index)
            group.leave()
        }
    }
    if group.wait(timeout: .now() + timeoutSeconds) == .timedOut {
        Issue.record("HUNG: \(count) concurrent peers not done within \(timeoutSeconds) s", sourceLocation: sourceLocation)
    }
}

/// Text that would mean the program crashed instead of reporting an error.
let crashMarkers = ["Backtrac", "Fatal error", "crashed", "Segmentation", "Illegal instruction"]

func hasCrashMarker(_ text: String) -> Bool { crashMarkers.contains { text.contains($0) } }
