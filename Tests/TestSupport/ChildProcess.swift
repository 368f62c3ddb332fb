import Foundation
import Glibc
import TCPTrace
import Testing

/// Runs the built executables (next to the test bundle in .build/<config>/) and reads their
/// output, so end-to-end tests exercise exactly what a user runs.
public enum Executables {
    public static let directory: URL = {
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var dir = exe.deletingLastPathComponent()
        // swift-testing may run from inside the .xctest bundle directory on some layouts.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("EchoServer").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }()

    public static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
}

/// A child process with captured stdout/stderr. Every wait on it is bounded: when a child
/// outlives its deadline it gets SIGTERM, a grace period, then SIGKILL, and the running test
/// gets a failed expectation naming the test, the command and what it was waiting for. A
/// hung child fails one test; it never hangs the suite (issue 14: a lost SIGTERM once held a
/// run for 7 minutes).
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    /// The command line, for failure messages.
    public let label: String
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let stdinPipe = Pipe()
    private var stdoutReader: PipeReader?
    private var stderrReader: PipeReader?
    /// Seconds between SIGTERM and SIGKILL for a child that overran its deadline.
    public static let graceSeconds = 3.0

    /// - Parameter wrapper: a command that execs the executable (`prlimit --nofile=64:64`,
    ///   `setpriv ...`), so the child's pid is still the program's own.
    public init(_ name: String, _ arguments: [String], environment: [String: String]? = nil, stdin: Bool = false,
                wrapper: [String] = [], executable: URL? = nil) throws {
        let program = executable ?? (name.hasPrefix("/") ? URL(fileURLWithPath: name) : Executables.url(name))
        if let tool = wrapper.first {
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = Array(wrapper.dropFirst()) + [program.path] + arguments
        } else {
            process.executableURL = program
            process.arguments = arguments
        }
        label = ([process.executableURL?.lastPathComponent ?? name] + (process.arguments ?? [])).joined(separator: " ")
        if let environment { process.environment = environment }
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.standardInput = stdin ? stdinPipe : FileHandle.nullDevice
        try Self.withTerminationSignalsUnblocked { try process.run() }
        stdoutReader = PipeReader(stdoutPipe.fileHandleForReading)
        stderrReader = PipeReader(stderrPipe.fileHandleForReading)
        Self.activity("start \(process.processIdentifier) \(Self.currentTestName) :: \(label)")
    }

    private static var currentTestName: String { Test.current.map { $0.displayName ?? $0.name } ?? "(no current test)" }

    /// With SOCKETKIT_TEST_ACTIVITY=PATH (set by .ci/run), one line per child started and
    /// reaped, appended with write(2) as it happens: the CI watchdog names the tests whose child
    /// is still running when it fires (swift-testing's own output cannot tell a hung test from
    /// one still waiting for a thread of its pool).
    private static let activityFD: Int32? = {
        guard let path = ProcessInfo.processInfo.environment["SOCKETKIT_TEST_ACTIVITY"] else { return nil }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        return fd >= 0 ? fd : nil
    }()

    private static func activity(_ line: String) {
        guard let fd = activityFD else { return }
        let text = line.replacingOccurrences(of: "\n", with: " ") + "\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }

    /// Foundation's Process spawns with the calling thread's signal mask, and swift-testing calls
    /// us on libdispatch worker threads, which block almost every signal (SigBlk
    /// fffffffe3bfbea27): children then started with SIGTERM and SIGINT blocked, and anything
    /// relying on their default action (sleep, tcpdump, socat, an old EchoServer) ignored them;
    /// that is the mask issue 14 found on the hung server. Unblocked in this thread for the
    /// spawn only (SIGCHLD and the rest stay as the runtime set them).
    static func withTerminationSignalsUnblocked<R>(_ body: () throws -> R) rethrows -> R {
        var termination = sigset_t()
        sigemptyset(&termination)
        for signo in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM] { sigaddset(&termination, signo) }
        var previous = sigset_t()
        pthread_sigmask(SIG_UNBLOCK, &termination, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    deinit {
        // A test that threw before waiting must not leave its server running.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            _ = Self.poll(timeout: 5) { !self.process.isRunning }
        }
    }

    public var stdinHandle: FileHandle { stdinPipe.fileHandleForWriting }

    public var stdout: Data { stdoutReader?.bytes ?? Data() }
    public var stderr: Data { stderrReader?.bytes ?? Data() }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }

    /// Waits up to `timeout` seconds for the exit, then escalates (SIGTERM, grace, SIGKILL) and
    /// records a failure; collects the rest of the output (bounded too). Returns the exit
    /// status, or the signal number when a signal ended the child (see `terminationReason`).
    @discardableResult
    public func wait(timeout: Double = 30, _ what: String = "exit", sourceLocation: SourceLocation = #_sourceLocation) -> Int32 {
        switch finish(timeout: timeout) {
        case .exited(let status):
            return status
        case .killed(let how, let status):
            Issue.record("HUNG in test \"\(Self.currentTestName)\": `\(label)` did not \(what) within \(timeout) s; sent \(how). stderr tail: \(stderrText.suffix(400))",
                         sourceLocation: sourceLocation)
            return status
        case .unkillable:
            // Unkillable (D state): report and move on rather than block the suite.
            Issue.record("`\(label)` survived SIGKILL for 10 s; not waiting any longer", sourceLocation: sourceLocation)
            return -1
        }
    }

    /// How a bounded wait ended.
    public enum Ending: Equatable {
        case exited(Int32)
        /// Overran the deadline: `how` it was ended, then its status.
        case killed(how: String, status: Int32)
        case unkillable
    }

    /// The bounded wait behind `wait`, recording nothing: SIGTERM at the deadline, SIGKILL
    /// after the grace period. For probes that run outside any test.
    public func finish(timeout: Double) -> Ending {
        var how: String?
        if !Self.poll(timeout: timeout, { !self.process.isRunning }) {
            how = "SIGTERM"
            kill(process.processIdentifier, SIGTERM)
            if !Self.poll(timeout: Self.graceSeconds, { !self.process.isRunning }) {
                how! += ", then SIGKILL after \(Self.graceSeconds) s"
                kill(process.processIdentifier, SIGKILL)
                _ = Self.poll(timeout: 10) { !self.process.isRunning }
            }
        }
        if process.isRunning { return .unkillable }
        collectOutput()
        Self.activity("end \(process.processIdentifier)")
        if let how { return .killed(how: how, status: process.terminationStatus) }
        return .exited(process.terminationStatus)
    }

    /// Whether the child exited by itself or was ended by a signal.
    public var terminationReason: Process.TerminationReason { process.terminationReason }

    /// After the exit: waits for both pipes' EOF, which comes once every writer is gone (a
    /// grandchild holding one open gets 2 s, then what arrived is what we have). Each pipe has
    /// its own reading thread, which records EOF after appending everything before it: removing
    /// Foundation's readability handlers at the exit and reading the rest here, as before, raced
    /// a handler already running (busy host: a `--scenario list` run read "", then the list), and
    /// handlers waiting for the dispatch pool under load missed a 2 s deadline (a TCPWatch line
    /// read cut in two).
    private func collectOutput() {
        _ = Self.poll(timeout: 2) { (self.stdoutReader?.ended ?? true) && (self.stderrReader?.ended ?? true) }
    }

    public func signal(_ signo: Int32) { kill(process.processIdentifier, signo) }

    public var pid: Int32 { process.processIdentifier }

    /// Ends the child now (SIGKILL) and reaps it, bounded. For set-up failures.
    public func killNow() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        _ = wait(timeout: 10, "die after SIGKILL")
    }

    /// Polls stderr until `predicate` holds on its text (bounded).
    public func waitForStderr(timeout: Double = 10, _ predicate: (String) -> Bool) -> Bool {
        Self.poll(timeout: timeout) { predicate(stderrText) }
    }

    /// The JSON trace events on stderr so far.
    public var events: [TraceEvent] {
        stderrText.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
    }

    /// Polls `condition` every 5 ms for up to `timeout` seconds.
    public static func poll(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(5_000)
        }
        return condition()
    }
}

/// Polls `condition` for up to `timeout` seconds.
public func waitFor(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    ChildProcess.poll(timeout: timeout, condition)
}

public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads one pipe to EOF on a thread of its own (not the dispatch pool, which a loaded test
/// run can starve): `bytes` so far, and whether EOF came. The thread holds the file handle, so
/// its descriptor stays open (and cannot be reused under it) until the read ends.
final class PipeReader: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var sawEOF = false

    init(_ handle: FileHandle) {
        let thread = Thread { [self] in self.read(handle) }
        thread.start()
    }

    var bytes: Data { lock.lock(); defer { lock.unlock() }; return data }
    var ended: Bool { lock.lock(); defer { lock.unlock() }; return sawEOF }

    private func read(_ handle: FileHandle) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                lock.lock(); data.append(contentsOf: buffer[0..<count]); lock.unlock()
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        lock.lock(); sawEOF = true; lock.unlock()
    }
}
