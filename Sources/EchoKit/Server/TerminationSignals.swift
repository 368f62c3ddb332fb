import CSocketKit
import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// SIGINT/SIGTERM owned by the program: blocked and routed to a signalfd at start-up, read by
/// a thread of our own (never a signal handler, never libdispatch). The first calls `onFirst`
/// (a graceful stop); the second calls `onSecond` (stop now: the program's own thread ends the
/// run and exits through its one exit path, with 128 + signo), or, for a program without
/// threads of its own to stop, exits with 128 + signo. A third one, should that stop hang (a
/// trace reader that stopped reading), leaves with `_exit`, running no exit handler.
///
/// Why not a dispatch signal source: libdispatch blocks the signal at once but registers its
/// descriptor later, lazily, on its manager thread. A server already out of descriptors (under
/// `prlimit --nofile=64`, flooded) never got the SIGTERM descriptor, so SIGTERM stayed blocked
/// and pending forever (issue 14). Here the descriptor exists before the first accept/connect,
/// or the program does not start.
public final class TerminationSignals: Sendable {
    private let count = Atomic<Int>(0)
    private let fd: Int32
    private let command: String
    /// Set once, by `start`.
    private let reader = Mutex<ThreadHandle?>(nil)

    /// Blocks SIGINT/SIGTERM in the calling thread and opens the signalfd. Call it first thing
    /// in `main`, before any thread starts: threads inherit the mask, and a thread that does not
    /// block the signals would take them with the default action (exit, no drain, no summary).
    /// C: `pthread_sigmask(SIG_BLOCK)`, `signalfd(2)`.
    public init(command: String) throws {
        let threads = Self.threadCount()
        if threads > 1 {
            // Not a runtime condition: a wiring mistake. Say so rather than lose signals later.
            throw SystemCallError(call: "pthread_sigmask", errno: EBUSY,
                                  subject: "\(threads) threads already running; block signals before starting any")
        }
        self.command = command
        fd = try syscall("signalfd") { CSocketKit_termination_signalfd() }
    }

    deinit {
        // Only reached when `start` was never called (the reader thread holds `self`).
        Glibc.close(fd)
    }

    /// Starts the reader thread. Signals that arrived since `init` are queued in the signalfd
    /// and delivered now, none lost. C: `pthread_create`.
    public func start(onFirst: @escaping @Sendable (Int32) -> Void,
                      onSecond: (@Sendable (Int32) -> Void)? = nil) throws {
        precondition(reader.locked { $0 == nil }, "TerminationSignals.start called twice")
        let thread = try ThreadHandle { [self] in
            while true {
                let signo = CSocketKit_signalfd_read(fd)
                if signo < 0 {
                    if errno == EINTR { continue }
                    // The descriptor is ours and open for the life of the process: this cannot
                    // happen short of memory corruption. Exit loudly rather than ignore signals.
                    SignalSafeOutput.line("\(command): read(signalfd): \(Errno.message(errno)); exiting")
                    exit(71)
                }
                switch count.wrappingAdd(1, ordering: .relaxed).newValue {
                case 1:
                    onFirst(signo)
                case 2:
                    SignalSafeOutput.line("\(command): second signal, exiting now")
                    // exit() here would run the exit handlers (trace flush, locks) on this thread
                    // while the program's threads still run: the program stops them instead.
                    guard let onSecond else { exit(128 + signo) }
                    onSecond(signo)
                default:
                    SignalSafeOutput.line("\(command): signal \(signo) again: exiting without writing the rest of the trace")
                    _exit(128 + signo)
                }
            }
        }
        reader.locked { $0 = thread }
    }

    /// How many termination signals arrived.
    public var received: Int { count.load(ordering: .relaxed) }

    /// Threads in this process (`Threads:` in /proc/self/status); 1 if it cannot be read.
    static func threadCount() -> Int {
        guard let text = try? TextFile.read("/proc/self/status") else { return 1 }
        for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(String(line.dropFirst("Threads:".count)).trimmedWhitespace) ?? 1
        }
        return 1
    }
}

/// One unbuffered line on stderr (no stdio buffering, so nothing is lost at exit).
public enum SignalSafeOutput {
    public static func line(_ text: String) {
        let line = text + "\n"
        // A failed write to stderr has nowhere to be reported; the line is best effort.
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
