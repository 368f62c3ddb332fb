import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace

/// The trace writer's page-cache policy (`PageCacheRelease`): older pages of a trace file are
/// dropped once writing into new pages proves expensive, the tail stays, no byte changes.
@Suite struct PageCacheReleaseTests {
    static let mib = 1 << 20

    /// A new file under TMPDIR (default /tmp), unlinked when `body` returns. Not on tmpfs, whose
    /// pages are the file itself and cannot be dropped: the test stops there with the reason.
    static func withTemporaryFile(_ body: (Int32) throws -> Void) throws {
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        let type = try fileSystemType(of: directory)
        try #require(type != "tmpfs", "\(directory) is tmpfs: its pages cannot be dropped")
        var template = Array("\(directory)/page-cache-release-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw SystemCallError(call: "mkstemp", errno: errno) }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { close(fd); unlink(path) }
        try body(fd)
    }

    /// The type of the file system `path` is on: the longest mount point above it in
    /// /proc/self/mounts.
    static func fileSystemType(of path: String) throws -> String {
        var best = (length: -1, type: "?")
        for line in try TextFile.read("/proc/self/mounts").split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let under = path == point || path.hasPrefix(point == "/" ? "/" : point + "/")
            if under && point.count > best.length { best = (point.count, String(fields[2])) }
        }
        return best.type
    }

    /// `size` bytes, a recognisable pattern, written and synced: clean pages the kernel may drop.
    static func fill(_ fd: Int32, size: Int) throws {
        let block = (0..<(64 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var written = 0
        while written < size {
            let n = block.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, min($0.count, size - written)) }
            guard n > 0 else { throw SystemCallError(call: "write", errno: errno) }
            written += n
        }
        guard fdatasync(fd) == 0 else { throw SystemCallError(call: "fdatasync", errno: errno) }
    }

    /// The share of `[offset, offset + length)`'s pages in the page cache (mincore(2) on a
    /// mapping of the file).
    static func residentShare(_ fd: Int32, offset: Int, length: Int) throws -> Double {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let map = mmap(nil, length, PROT_READ, MAP_SHARED, fd, off_t(offset)), map != MAP_FAILED else {
            throw SystemCallError(call: "mmap", errno: errno)
        }
        defer { munmap(map, length) }
        var vector = [UInt8](repeating: 0, count: (length + page - 1) / page)
        guard mincore(map, length, &vector) == 0 else { throw SystemCallError(call: "mincore", errno: errno) }
        return Double(vector.filter { $0 & 1 != 0 }.count) / Double(vector.count)
    }

    /// Every byte still the pattern `fill` wrote.
    static func intact(_ fd: Int32, size: Int) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var offset = 0
        while offset < size {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard n > 0 else { return false }
            for index in 0..<n where chunk[index] != UInt8(truncatingIfNeeded: ((offset + index) % (64 * 1024)) &* 31 &+ 7) {
                return false
            }
            offset += n
        }
        return true
    }

    @Test func expensiveWrites_dropEveryPageButTheTail() throws {
        try Self.withTemporaryFile { fd in
            let size = 24 * Self.mib, kept = 8 * Self.mib
            try Self.fill(fd, size: size)
            try #require(try Self.residentShare(fd, offset: 0, length: size) > 0.9, "written pages were not cached")
            var policy = PageCacheRelease(windowBytes: 8 * Self.mib, keptBytes: kept, expensiveNsPerByte: 1)
            // A window whose write(2)s cost 3 ns a byte, as into new pages on this project's VMs.
            policy.wrote(8 * Self.mib, cpuNs: UInt64(3 * 8 * Self.mib), to: fd)
            defer { policy.stop() }
            #expect(policy.dropping)
            #expect(policy.droppedBelow == size - kept)
            // The call runs on the dropper's thread: wait for it (bounded).
            let dropper = try #require(policy.dropper)
            #expect(dropper.waitUntilSettled(timeoutSeconds: 30), "HUNG: the page dropper did not finish within 30 s")
            #expect(try Self.residentShare(fd, offset: 0, length: size - kept) < 0.1)
            #expect(try Self.residentShare(fd, offset: size - kept, length: kept) > 0.9)
            #expect(Self.intact(fd, size: size))
        }
    }

    @Test func cheapWrites_keepEveryPage() throws {
        try Self.withTemporaryFile { fd in
            let size = 24 * Self.mib
            try Self.fill(fd, size: size)
            var policy = PageCacheRelease(windowBytes: 8 * Self.mib, keptBytes: 8 * Self.mib, expensiveNsPerByte: 1)
            // 0.2 ns a byte: pages the guest already holds.
            for _ in 0..<3 { policy.wrote(8 * Self.mib, cpuNs: UInt64(8 * Self.mib / 5), to: fd) }
            #expect(!policy.dropping)
            #expect(policy.droppedBelow == 0)
            #expect(policy.dropper == nil)
            #expect(try Self.residentShare(fd, offset: 0, length: size) > 0.9)
        }
    }

    @Test func theDecisionWaitsForAWholeWindow() {
        var policy = PageCacheRelease(windowBytes: 8 * Self.mib, keptBytes: Self.mib, expensiveNsPerByte: 1)
        // One expensive MiB is not a window: nothing decided, nothing asked of the descriptor.
        policy.wrote(Self.mib, cpuNs: 100 * UInt64(Self.mib), to: -1)
        #expect(!policy.dropping)
    }

    /// Through the writer thread, dropping from the first window: every line is still there, in
    /// order, and pages were offered up.
    @Test func aDroppingTraceWriter_losesNoLine() throws {
        try Self.withTemporaryFile { fd in
            let policy = PageCacheRelease(windowBytes: Self.mib, keptBytes: Self.mib, expensiveNsPerByte: 0)
            let writer = TraceWriter(format: .json, fd: fd, ownsDescriptor: false, color: false, immediate: false,
                                     baseNs: 0, capacity: 16_384, byteBudget: 1 << 20, flushTimeoutSeconds: 30,
                                     side: .server, width: nil, pageCache: policy)
            let padding = String(repeating: "x", count: 200)
            for batch in 0..<10 {
                for n in (batch * 2_000)..<((batch + 1) * 2_000) {
                    writer.emit(TraceEvent(timestampNs: UInt64(n), side: .server, conn: n, kind: .info, cause: padding))
                }
                writer.flush()
            }
            #expect(writer.droppedCount == 0)
            #expect(writer.pageCache.dropping)
            #expect(writer.pageCache.droppedBelow > 0)
            var status = stat()
            #expect(fstat(fd, &status) == 0)
            var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            #expect(n == bytes.count)
            let conns = bytes.split(separator: UInt8(ascii: "\n")).compactMap { TraceEvent(jsonLine: Substring(decoding: $0, as: UTF8.self)) }.map(\.conn)
            #expect(conns == Array(0..<20_000))
        }
    }
}
