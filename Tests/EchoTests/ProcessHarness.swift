import Foundation
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// Runs the built executables (next to the test bundle in .build/<config>/) and reads their
/// output, so end-to-end tests exercise exactly what a user runs.
enum Executables {
    static let directory: URL = {
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var dir = exe.deletingLastPathComponent()
        // swift-testing may run from inside the .xctest bundle directory on some layouts.
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("EchoServer").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }()

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
}

/// A child process with captured stdout/stderr.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let stdinPipe = Pipe()
    private let lock = NSLock()
    private var stdoutData = Data()
    private var stderrData = Data()

    /// - Parameter wrapper: a command that execs the executable (`prlimit --nofile=64:64`,
    ///   `setpriv ...`), so the child's pid is still the program's own.
    init(_ name: String, _ arguments: [String], environment: [String: String]? = nil, stdin: Bool = false,
         wrapper: [String] = [], executable: URL? = nil) throws {
        let program = executable ?? (name.hasPrefix("/") ? URL(fileURLWithPath: name) : Executables.url(name))
        if let tool = wrapper.first {
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = Array(wrapper.dropFirst()) + [program.path] + arguments
        } else {
            process.executableURL = program
            process.arguments = arguments
        }
        if let environment { process.environment = environment }
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.standardInput = stdin ? stdinPipe : FileHandle.nullDevice
        stdoutPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            self.lock.lock(); self.stdoutData.append(data); self.lock.unlock()
        }
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            self.lock.lock(); self.stderrData.append(data); self.lock.unlock()
        }
        try process.run()
    }

    var stdinHandle: FileHandle { stdinPipe.fileHandleForWriting }

    var stdout: Data { lock.lock(); defer { lock.unlock() }; return stdoutData }
    var stderr: Data { lock.lock(); defer { lock.unlock() }; return stderrData }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }

    /// Waits for exit (bounded) and drains the pipes.
    @discardableResult
    func wait(timeout: Double = 30) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        process.waitUntilExit()
        // Let the readability handlers deliver the last bytes.
        usleep(50_000)
        stdoutPipe.fileHandleForReading.readabilityHandler = nil
        stderrPipe.fileHandleForReading.readabilityHandler = nil
        lock.lock()
        stdoutData.append(stdoutPipe.fileHandleForReading.readDataToEndOfFile())
        stderrData.append(stderrPipe.fileHandleForReading.readDataToEndOfFile())
        lock.unlock()
        return process.terminationStatus
    }

    func signal(_ signo: Int32) { kill(process.processIdentifier, signo) }

    var pid: Int32 { process.processIdentifier }

    /// Polls stderr until `predicate` holds on its text (bounded).
    func waitForStderr(timeout: Double = 10, _ predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if predicate(stderrText) { return true }
            usleep(5_000)
        }
        return predicate(stderrText)
    }

    /// The JSON trace events on stderr so far.
    var events: [TraceEvent] {
        stderrText.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
    }
}

/// A JSON-tracing EchoServer on a free port of 127.0.0.1.
final class ServerProcess: @unchecked Sendable {
    let child: ChildProcess
    let port: UInt16

    /// - Parameter traceFile: send the JSON trace there instead of stderr (long, busy tests:
    ///   the port then comes from the "listening on" line).
    init(_ extra: [String] = [], traceFile: String? = nil, wrapper: [String] = []) throws {
        let trace = traceFile.map { ["--trace-file", $0] } ?? []
        child = try ChildProcess("EchoServer", ["--port", "0", "--trace", "json", "--threads", "1"] + trace + extra,
                                 wrapper: wrapper)
        var found: UInt16?
        _ = child.waitForStderr { text in
            for line in text.split(separator: "\n") {
                if let range = line.range(of: "listening on "),
                   let address = SocketAddress(parsing: String(line[range.upperBound...].prefix { $0 != " " })) {
                    found = address.port
                    return true
                }
                // The text trace's LISTEN line.
                if line.contains("→ LISTEN"), let range = line.range(of: "127.0.0.1:") {
                    found = UInt16(line[range.upperBound...].prefix(while: \.isNumber))
                    if found != nil { return true }
                }
                if let e = TraceEvent(jsonLine: line), e.to == .listen, let local = e.local,
                   let address = SocketAddress(parsing: local) {
                    found = address.port
                    return true
                }
            }
            return false
        }
        guard let found else {
            child.process.terminate()
            throw HarnessError("server did not report LISTEN: \(child.stderrText)")
        }
        port = found
    }

    var pid: Int32 { child.pid }

    /// SIGTERM and wait; idempotent (a second call returns the first exit status).
    func stop() -> Int32 {
        if !child.process.isRunning { return child.wait() }
        child.signal(SIGTERM)
        return child.wait()
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Array where Element == TraceEvent {
    /// The `to` states of state events for one side and connection, in order.
    func states(side: TraceSide, conn: Int? = nil) -> [TCPState] {
        filter { $0.kind == .state && $0.side == side && (conn == nil || $0.conn == conn) }.compactMap(\.to)
    }
}
