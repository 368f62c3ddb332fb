import Glibc
import SocketKit

/// Whole small text files (/proc, /sys, tracefs, trace logs), through the syscall helper so
/// EINTR and errno follow the one policy. C: `open`, `read`.
package enum TextFile {
    package static func read(_ path: String) throws(SystemCallError) -> String {
        let fd: Int32
        do {
            fd = try syscall("open") { open(path, O_RDONLY | O_CLOEXEC) }
        } catch {
            throw error.on(path)
        }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = try syscall("read") { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Creates or truncates `path` (mode 0644 before umask) and writes `text`; partial writes
    /// continue where they stopped. C: `open(O_CREAT|O_TRUNC)`, `write`.
    package static func write(_ path: String, _ text: String) throws(SystemCallError) {
        let fd = try createForWriting(path)
        defer { Glibc.close(fd) }
        try writeAll(fd, Array(text.utf8), subject: path)
    }

    /// Creates or truncates `path` for writing, close-on-exec. C: `open(O_WRONLY|O_CREAT|O_TRUNC)`.
    package static func createForWriting(_ path: String) throws(SystemCallError) -> Int32 {
        do {
            return try syscall("open") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        } catch {
            throw error.on(path)
        }
    }

    /// Writes every byte, continuing after short writes (EINTR is the syscall helper's). C: `write`.
    package static func writeAll(_ fd: Int32, _ bytes: [UInt8], subject: String) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            do {
                done += try syscall("write") { bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } }
            } catch {
                throw error.on(subject)
            }
        }
    }

    /// nil when the file does not exist; other failures are thrown.
    package static func readIfPresent(_ path: String) throws(SystemCallError) -> String? {
        do {
            return try read(path)
        } catch {
            if error.errno == ENOENT { return nil }
            throw error
        }
    }
}

extension String {
    /// Without leading and trailing whitespace (Foundation-free).
    package var trimmedWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
