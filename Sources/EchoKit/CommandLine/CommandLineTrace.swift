import Glibc
import SocketKit
import TCPTrace

/// The trace options both executables share (`--trace`, `--trace-file`, `--trace-verbose`,
/// `--no-color`, `--close-wait-warn`), and the sink they describe.
public struct CommandLineTrace: Sendable {
    public var format: TraceFormat
    public var path: String?
    public var verbose: Bool
    public var color: Bool
    public var closeWaitWarnSeconds: Double
    /// `--kernel-trace auto|on|off` (default auto).
    public var kernelTrace: KernelTraceMode = .auto

    public static func options(_ arguments: ParsedArguments) throws -> CommandLineTrace {
        let format: TraceFormat = try arguments.choice("--trace", default: .text)
        let path = arguments.string("--trace-file")
        // Color only for a terminal, never with NO_COLOR (https://no-color.org) or --no-color.
        let color = path == nil && isatty(2) == 1 && getenv("NO_COLOR") == nil && !arguments.has("--no-color")
            && getenv("TERM").map { String(cString: $0) } != "dumb"
        var options = CommandLineTrace(format: format, path: path, verbose: arguments.has("--trace-verbose"), color: color,
                                       closeWaitWarnSeconds: try arguments.seconds("--close-wait-warn") ?? 5)
        options.kernelTrace = try arguments.choice("--kernel-trace", default: .auto)
        return options
    }

    /// Resolves `--kernel-trace` once at start and says what it chose in one `info` event on
    /// `sink` (with the reason when falling back). `on` and impossible: throws
    /// `KernelTraceUnavailable` (one line, exit 77 or 69).
    public func makeKernelSource(command: String, sink: TraceSink, side: TraceSide) throws -> TracepointSource? {
        let (source, note) = try openKernelSource(command: command, sink: sink, side: side)
        if let note { sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .info, cause: note)) }
        return source
    }

    /// Like `makeKernelSource` but returns the one-line note instead of emitting it, so a
    /// program can first do what may fail (bind) and keep a failure to a single stderr line.
    public func openKernelSource(command: String, sink: TraceSink, side: TraceSide) throws -> (TracepointSource?, String?) {
        guard format != .off else { return (nil, nil) }
        let (source, note) = try TracepointSource.make(mode: kernelTrace, sink: sink, side: side)
        return (source, note)
    }

    /// stderr (flushed per event on a terminal) or the trace file.
    public func makeSink() throws -> TraceWriter {
        if let path {
            do {
                return try TraceWriter.file(path: path, format: format)
            } catch {
                throw TraceFileError(underlying: error)
            }
        }
        return TraceWriter(format: format, fd: 2, color: color, immediate: isatty(2) == 1, width: TerminalWidth.columns(fd: 2))
    }

    /// Writes plain text to where the trace goes.
    public func write(_ text: String) {
        var fd: Int32 = 2
        // The trace file was created by makeSink(); if it cannot be opened now, stderr still
        // gets the text rather than losing it.
        if let path {
            let opened = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            if opened >= 0 { fd = opened }
        }
        // Best effort: this is the last line of a failing run, with nowhere else to report to.
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        if fd != 2 { close(fd) }
    }
}

/// The trace file could not be created: sysexits 73 (EX_CANTCREAT) for both programs, whatever
/// the errno (ENOENT here means a missing directory, not a missing input).
public struct TraceFileError: Error, CustomStringConvertible, ExitStatusProviding {
    public let underlying: any Error
    public var description: String { "\(underlying)" }
    public var exitStatus: Int32 { SysExits.cantCreate }
}
