import Foundation
import Glibc
import TestSupport
import Testing

/// Runs a program on a real pseudo-terminal of a given width (python3's pty module, a program
/// nobody here wrote), optionally sends SIGINT after some seconds, and returns what the
/// terminal received, with the time each chunk arrived. Bounded: SIGKILL at `timeout`.
struct TerminalRun {
    var status: Int32
    /// (seconds since start, text) per read.
    var chunks: [(Double, String)]
    var text: String { chunks.map(\.1).joined() }

    /// The lines as a terminal shows them: colour codes and erase-line codes removed, each
    /// `\r` starting the line over (an updating status line shows its last state).
    var screenLines: [String] { split().screen }

    /// Every visible piece between carriage returns and newlines (what was ever on a line).
    var allPieces: [String] { split().pieces }

    /// Walks the output scalar by scalar (a terminal's CR LF is one Character in Swift).
    private func split() -> (screen: [String], pieces: [String]) {
        let plain = text.replacingOccurrences(of: "\u{1b}\\[[0-9;]*[A-Za-z]", with: "", options: .regularExpression)
        var screen: [String] = [], pieces: [String] = []
        var line = "", piece = ""
        for scalar in plain.unicodeScalars {
            switch scalar {
            case "\n":
                if !piece.isEmpty { line = piece }
                screen.append(line); pieces.append(piece)
                line = ""; piece = ""
            case "\r":
                if !piece.isEmpty { line = piece; pieces.append(piece) }
                piece = ""
            default:
                piece.unicodeScalars.append(scalar)
            }
        }
        if !piece.isEmpty { screen.append(piece); pieces.append(piece) }
        return (screen, pieces)
    }

    static let script = #"""
import codecs, fcntl, json, os, pty, select, signal, struct, sys, termios, time
cols, rows = int(sys.argv[1]), 50
interrupt_after, timeout = float(sys.argv[2]), float(sys.argv[3])
argv = sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.environ.pop("COLUMNS", None)
    os.environ["TERM"] = "xterm"
    os.execv(argv[0], argv)
start = time.monotonic()
chunks, sent, status = [], False, None
# A character split across two reads must not become two replacement characters.
decoder = codecs.getincrementaldecoder("utf-8")("replace")
while True:
    now = time.monotonic() - start
    if interrupt_after > 0 and not sent and now >= interrupt_after:
        os.kill(pid, signal.SIGINT); sent = True
    if now > timeout:
        os.kill(pid, signal.SIGKILL)
    r, _, _ = select.select([fd], [], [], 0.05)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            chunks.append([time.monotonic() - start, decoder.decode(data)])
            continue
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        if status < 0: status = 128 - status
        # what is still buffered in the pty
        while True:
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r: break
            try: data = os.read(fd, 65536)
            except OSError: break
            if not data: break
            chunks.append([time.monotonic() - start, decoder.decode(data)])
        chunks.append([time.monotonic() - start, decoder.decode(b"", final=True)])
        break
print(json.dumps({"status": status, "chunks": chunks}))
"""#

    static var python: String? {
        ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// `program arguments` on a `columns`-wide terminal; SIGINT after `interruptAfter` s (0: never).
    static func run(_ program: String, _ arguments: [String], columns: Int, interruptAfter: Double = 0,
                    timeout: Double = 90, wrapper: [String] = []) throws -> TerminalRun {
        guard let python else { throw HarnessError("python3 not found") }
        // The script as `-c`, not a file: /tmp/socketkit-pty-<pid>.py files were left behind, and
        // one written by root blocked a later run as nobody that got the same pid (EPERM).
        let exe = program.hasPrefix("/") ? program : Executables.url(program).path
        let child = try ChildProcess(python, ["-c", script, String(columns), String(interruptAfter), String(timeout)]
                                     + wrapper + [exe] + arguments)
        _ = child.wait(timeout: timeout + 15, "the pty runner")
        let object = try JSONSerialization.jsonObject(with: child.stdout) as? [String: Any] ?? [:]
        let chunks = (object["chunks"] as? [[Any]] ?? []).map { ($0[0] as? Double ?? 0, $0[1] as? String ?? "") }
        return TerminalRun(status: Int32(object["status"] as? Int ?? -1), chunks: chunks)
    }

    /// Lines wider than `columns` (visible characters: every mark we print is one column).
    func tooWide(_ columns: Int) -> [String] {
        allPieces.filter { $0.count > columns }
    }
}
