import Glibc
import SocketKit

/// The process holding a socket, found as `ss -p` finds it: the socket's inode among the
/// `socket:[inode]` links of /proc/PID/fd.
public struct SocketOwner: Sendable, Equatable {
    public var pid: Int32
    public var command: String
    public var label: String { "pid \(pid) (\(ByteEscaping.escape(Array(command.utf8), limit: 32)))" }
}

/// Maps socket inodes to processes by scanning /proc. Unprivileged, /proc/PID/fd of another
/// user's process is unreadable (EACCES): those processes are counted, never guessed at.
///
/// A scan reads every fd link of every readable process, so it runs only when a socket with an
/// unknown inode appears, at most every `minimumIntervalNs`, and only the chosen pids when
/// `--pid`/`--process` narrow the watch.
public final class ProcessOwners {
    private var owners: [UInt32: SocketOwner] = [:]
    private var lastScanNs: UInt64 = 0
    public private(set) var unreadableProcesses = 0
    public private(set) var scans = 0
    public let minimumIntervalNs: UInt64
    /// Only these pids (nil: all), and only processes whose command is `command` (nil: any).
    public var pids: Set<Int32>?
    public var command: String?

    public init(minimumIntervalNs: UInt64 = 100_000_000) {
        self.minimumIntervalNs = minimumIntervalNs
    }

    public func owner(inode: UInt32) -> SocketOwner? { owners[inode] }

    /// Rescans if one of `inodes` is unknown and the last scan is old enough; returns whether
    /// a scan ran. Inodes of sockets now gone are forgotten, so the map stays bounded.
    @discardableResult
    public func refresh(wanting inodes: [UInt32], live: Set<UInt32>, now: UInt64) -> Bool {
        guard inodes.contains(where: { $0 != 0 && owners[$0] == nil }),
              now &- lastScanNs >= minimumIntervalNs || lastScanNs == 0 else { return false }
        scan(keeping: live)
        lastScanNs = now
        return true
    }

    /// The inodes of every socket the chosen processes hold (for `--pid`/`--process`).
    public func scan(keeping live: Set<UInt32>) {
        scans += 1
        var found: [UInt32: SocketOwner] = [:]
        var unreadable = 0
        for pid in candidatePids() {
            guard let command = Self.command(of: pid) else { continue }
            if let wanted = self.command, wanted != command { continue }
            guard let dir = opendir("/proc/\(pid)/fd") else {
                if errno == EACCES || errno == EPERM { unreadable += 1 }
                continue
            }
            defer { closedir(dir) }
            var link = [CChar](repeating: 0, count: 64)
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name.first?.isNumber == true else { continue }
                let length = readlink("/proc/\(pid)/fd/\(name)", &link, link.count - 1)
                guard length > 8 else { continue }
                let text = String(decoding: link[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard text.hasPrefix("socket:["), let inode = UInt32(text.dropFirst(8).dropLast()) else { continue }
                // The first holder found keeps it (a forked socket is shared; ss -p lists all).
                if found[inode] == nil { found[inode] = SocketOwner(pid: pid, command: command) }
            }
        }
        // Keep what is still live but not found this time (a process that exited while its socket lives on).
        for (inode, owner) in owners where found[inode] == nil && live.contains(inode) { found[inode] = owner }
        owners = found
        knownInodes = Set(found.keys)
        unreadableProcesses = unreadable
    }

    /// Every inode the chosen processes hold (valid after `scan`).
    public private(set) var knownInodes: Set<UInt32> = []

    private func candidatePids() -> [Int32] {
        if let pids { return Array(pids) }
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    /// /proc/PID/comm without its newline; nil when the process is gone.
    public static func command(of pid: Int32) -> String? {
        guard let text = try? TextFile.read("/proc/\(pid)/comm") else { return nil }
        return String(text.prefix { $0 != "\n" })
    }
}
