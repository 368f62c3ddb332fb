import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// The trace as plain text, for the modes that print reports rather than one event at a time
/// (the scenario lab): stderr, or the `--trace-file` created before the run starts. The same
/// stream the demo's and the server's trace use, so stdout stays for data only.
public final class TraceStream: Sendable {
    public let fd: Int32
    /// A terminal: colour allowed, one updating status line, text wrapped to `width`.
    public let isTerminal: Bool
    public let width: Int?
    private let lock = Mutex<Bool>(false)   // true while a status line is on screen
    private let ownsDescriptor: Bool

    /// Creates (truncates) the trace file, or takes stderr. A file that cannot be created is
    /// one line and exit 73 (`TraceFileError`).
    public init(_ options: CommandLineTrace) throws {
        if let path = options.path {
            do {
                fd = try TextFile.createForWriting(path)
            } catch {
                throw TraceFileError(underlying: error)
            }
            ownsDescriptor = true
            isTerminal = false
            width = nil
        } else {
            fd = 2
            ownsDescriptor = false
            isTerminal = isatty(2) == 1
            width = TerminalWidth.columns(fd: 2)
        }
    }

    deinit { if ownsDescriptor { Glibc.close(fd) } }

    /// Writes `text` whole (lines from other threads never land inside it). A status line on
    /// screen is erased first.
    public func write(_ text: String) {
        lock.locked { statusShown in
            var out = statusShown ? "\r\u{1b}[K" : ""
            statusShown = false
            out += text
            // Best effort: a closed stderr has nowhere to report its own failure.
            try? TextFile.writeAll(fd, Array(out.utf8), subject: "trace")
        }
    }

    /// One line that replaces itself on a terminal (`… TIME_WAIT 54 s left`); elsewhere a
    /// plain line, only when `always` (a file or pipe does not need a countdown every second).
    public func status(_ text: String, always: Bool) {
        lock.locked { statusShown in
            if isTerminal {
                let fitted = width.map { String(text.prefix(max($0 - 1, 10))) } ?? text
                try? TextFile.writeAll(fd, Array(("\r\u{1b}[K" + fitted).utf8), subject: "trace")
                statusShown = true
            } else if always {
                try? TextFile.writeAll(fd, Array((text + "\n").utf8), subject: "trace")
            }
        }
    }
}
