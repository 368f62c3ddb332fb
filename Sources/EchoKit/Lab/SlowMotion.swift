import Glibc
import SocketKit
import TCPTrace

/// `--slow-motion on|off|auto`.
public enum SlowMotionMode: String, Sendable, CaseIterable {
    case on, off, auto
}

/// Whether this process runs in slow motion, and the one line that says so.
public struct SlowMotionStatus: Sendable {
    public var active: Bool
    /// Why not, or what was set up.
    public var note: String
    public static let rateBitsPerSecond = 8_000

    /// One line for the text output, with the segment delay (measured RTT when known).
    public func line(rttMicros: UInt32?) -> String {
        guard active else { return "Slow motion: off — \(note)" }
        var text = "Slow motion: on — \(note); a segment crosses lo in ~1 ms per byte (bare ACK ~52 ms, SYN ~60 ms)"
        if let rttMicros { text += ", measured RTT \(TextTraceRenderer.duration(UInt64(rttMicros) * 1000))" }
        return text
    }

    public var json: String {
        "{\"active\":\(active),\"note\":\(JSONTraceRenderer.quoted(note))" + (active ? ",\"rate_bps\":\(Self.rateBitsPerSecond)}" : "}")
    }
}

/// Slow motion without root: a private user + network namespace whose loopback is shaped by a
/// token-bucket qdisc (8 kbit/s), so every segment takes tens of milliseconds and transient
/// states (SYN_RECEIVED, FIN_WAIT_1, CLOSING, LAST_ACK) last long enough to be read.
///
/// unshare(CLONE_NEWUSER) refuses a multi-threaded process, and a Swift program has threads
/// before main() runs; so the program re-executes itself under `unshare -Urn` (util-linux),
/// and the fresh child, marked by an environment variable, sets up lo and the qdisc with
/// `ip` and `tc` (iproute2) as the namespace's root.
public enum SlowMotion {
    static let marker = "SOCKETKIT_LAB_NAMESPACE"
    public static let tbf = ["qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8kbit", "burst", "1600", "latency", "10s"]

    /// The marker's value for a namespace at real speed (no qdisc): the wire capture's.
    static let realSpeedValue = "real-speed"

    /// Whether this process is the re-executed child inside the namespace.
    public static var isInsideNamespace: Bool { getenv(marker) != nil }

    /// Inside a namespace entered only to capture the wire at real speed (`--wire`, demo).
    static var isRealSpeedNamespace: Bool {
        getenv(marker).map { String(cString: $0) == realSpeedValue } ?? false
    }

    /// Decides whether to enter a user+net namespace at real speed, where an unprivileged
    /// process may open AF_PACKET on its own loopback. `.realSpeed` carries why not.
    public static func planRealSpeedNamespace() -> Plan {
        guard let unshare = findProgram("unshare"), let ip = findProgram("ip") else {
            return .realSpeed(SlowMotionStatus(active: false, note: "unshare/ip not found (install util-linux and iproute2)"))
        }
        let probe = run(unshare, ["-Urn", ip, "link", "set", "lo", "up"])
        guard probe.status == 0 else {
            let reason = probe.output.split(separator: "\n").first.map(String.init) ?? "exit \(probe.status)"
            return .realSpeed(SlowMotionStatus(active: false, note: "user/network namespaces not permitted here (\(reason))"))
        }
        return .reexecute(unshare: unshare)
    }

    public enum Plan: Sendable {
        /// Re-execute under unshare (does not return on success).
        case reexecute(unshare: String)
        /// Run here, at real speed, with this status.
        case realSpeed(SlowMotionStatus)
    }

    /// Decides in the parent: probes `unshare -Urn ip link set lo up` once (~10 ms).
    public static func plan(_ mode: SlowMotionMode) -> Plan {
        if mode == .off { return .realSpeed(SlowMotionStatus(active: false, note: "real speed (--slow-motion off)")) }
        let missing = ["unshare", "ip", "tc"].filter { findProgram($0) == nil }
        if !missing.isEmpty {
            let package = missing.contains("unshare") ? (missing.count > 1 ? "util-linux and iproute2" : "util-linux") : "iproute2"
            return .realSpeed(SlowMotionStatus(active: false, note: "\(missing.joined(separator: ", ")) not found (install \(package)); real speed"))
        }
        let unshare = findProgram("unshare")!
        let probe = run(unshare, ["-Urn", findProgram("ip")!, "link", "set", "lo", "up"])
        guard probe.status == 0 else {
            let reason = probe.output.split(separator: "\n").first.map(String.init) ?? "exit \(probe.status)"
            return .realSpeed(SlowMotionStatus(active: false, note: "user/network namespaces not permitted here (\(reason)); real speed"))
        }
        return .reexecute(unshare: unshare)
    }

    /// Replaces this process with `unshare -Urn <this executable> <same arguments>`.
    public static func reexecute(unshare: String, arguments: [String], realSpeed: Bool = false) throws -> Never {
        let exe = Self.ownExecutable() ?? CommandLine.arguments[0]
        setenv(marker, realSpeed ? realSpeedValue : "1", 1)
        let argv = [unshare, "-Urn", exe] + arguments
        var cArgs = argv.map { strdup($0) } + [nil]
        execv(unshare, &cArgs)
        throw SystemCallError(call: "execv", errno: errno, subject: unshare)
    }

    /// In the child: lo up, the qdisc, and one 1500-byte datagram to empty the bucket (otherwise
    /// the first 1600 bytes pass at full speed).
    public static func setUpInside() -> SlowMotionStatus {
        guard let ip = findProgram("ip"), let tc = findProgram("tc") else {
            return SlowMotionStatus(active: false, note: "ip/tc not found inside the namespace; real speed")
        }
        let up = run(ip, ["link", "set", "lo", "up"])
        guard up.status == 0 else {
            return SlowMotionStatus(active: false, note: "ip link set lo up failed: \(up.output.prefix(120)); real speed")
        }
        if isRealSpeedNamespace {
            return SlowMotionStatus(active: false, note: "real speed, in a private user+net namespace (for the wire capture)")
        }
        let shaped = run(tc, tbf)
        guard shaped.status == 0 else {
            return SlowMotionStatus(active: false, note: "tc qdisc add failed: \(shaped.output.prefix(120)); real speed in a private namespace")
        }
        drainBucket()
        return SlowMotionStatus(active: true, note: "private user+net namespace, lo shaped by tc tbf rate 8kbit burst 1600")
    }

    /// Empties the token bucket so the next segment already waits. The bucket refills while
    /// idle (1000 bytes/s, up to 1600), so a run that starts after a pause would send its
    /// first segments at full speed. Sends 200-byte datagrams to a UDP socket of our own (no
    /// ICMP reply) until one is held back, then waits for it: the bucket is then empty.
    /// Bounded: at most 10 datagrams (2000 bytes > burst) and ~0.5 s.
    public static func drainBucket() {
        let receiver = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        let sender = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { Glibc.close(receiver); Glibc.close(sender) }
        guard var address = SocketAddress(numericHost: "127.0.0.1", port: 0) else { return }
        _ = address.withSockAddr { Glibc.bind(receiver, $0, $1) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(receiver, $0, &length) } }
        address = SocketAddress(storage: storage) ?? address
        var payload = [UInt8](repeating: 0, count: 200)
        for _ in 0..<10 {
            _ = address.withSockAddr { sa, len in payload.withUnsafeBytes { sendto(sender, $0.baseAddress, $0.count, 0, sa, len) } }
            var p = pollfd(fd: receiver, events: Int16(POLLIN), revents: 0)
            let atOnce = poll(&p, 1, 2) == 1
            if !atOnce { _ = poll(&p, 1, 500) }
            _ = payload.withUnsafeMutableBytes { recv(receiver, $0.baseAddress, $0.count, 0) }
            if !atOnce { return }
        }
    }

    /// `name` on PATH, or in /sbin and /usr/sbin (often not on an unprivileged user's PATH).
    public static func findProgram(_ name: String) -> String? {
        let path = String(cString: getenv("PATH") ?? strdup("/usr/bin:/bin"))
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        return directories.map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs a program, returning its exit status and combined output. posix_spawn + waitpid
    /// rather than Foundation's Process: no run loop, and the output is tiny (an error line).
    static func run(_ path: String, _ arguments: [String]) -> (status: Int32, output: String) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return (127, "pipe: \(Errno.name(errno))") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        var argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, &argv, environ)
        Glibc.close(fds[1])
        defer { Glibc.close(fds[0]) }
        guard spawned == 0 else { return (127, "posix_spawn \(path): \(Errno.name(spawned))") }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while output.count < 16 * 1024 {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n > 0 { output += buffer[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: output, as: UTF8.self).trimmedWhitespace)
    }

    /// The running executable's path (readlink /proc/self/exe).
    static func ownExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
