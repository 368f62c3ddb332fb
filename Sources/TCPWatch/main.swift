import EchoKit
import Glibc
import SocketKit
import TCPTrace

// TCPWatch: argument parsing and wiring only; the engine is EchoKit's WatchRun.

let command = "TCPWatch"
let json = WatchOptions.wantsJSON(CommandLine.arguments.dropFirst())

/// One line on stderr (a JSON `error` event with --trace json), then exit.
func fail(_ message: String, code: Int32) -> Never {
    if json {
        SignalSafeOutput.line(JSONTraceRenderer.render(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, pid: getpid(),
                                                                  conn: 0, kind: .error, cause: "\(command): \(message)")))
    } else {
        SignalSafeOutput.line("\(command): \(message)")
    }
    exit(code)
}

let scanner = ArgumentScanner(command: command, options: WatchOptions.specs, allowsPositionals: false)
let arguments: ParsedArguments
let options: WatchOptions
do {
    arguments = try scanner.parse(CommandLine.arguments.dropFirst())
    if arguments.has("--help") {
        print(scanner.help(summary: "Watch any program's TCP sockets, their states and segments, live, without root.",
                           usage: WatchOptions.usage, footer: """
            Events go to stdout (or --trace-file). Unprivileged: sock_diag polls (adaptive, 10-450 ms) filtered
            in the kernel, plus destroy notifications, so no connection goes unreported; states between two
            polls are labelled with both times, states never seen are labelled inferred. As root: the
            sock:inet_sock_set_state tracepoint gives every transition, --wire on adds the segments.
            Exit status: 0 ok (also at the end of --duration, or on SIGINT/SIGTERM); 64 usage; 69 unavailable;
            71 OS error; 73 cannot create a file; 77 permission denied.
            """))
        exit(0)
    }
    if arguments.has("--version") {
        print("\(command) \(SocketKitVersion.current)")
        exit(0)
    }
    options = try WatchOptions.parse(arguments)
} catch {
    fail("\(error) (see '\(command) --help')", code: SysExits.usage)
}

signal(SIGPIPE, SIG_IGN)
// Before any thread starts (the trace writer), so no thread takes SIGINT with the default action.
let signals: TerminationSignals
do {
    signals = try TerminationSignals(command: command)
} catch {
    fail("\(error)", code: SysExits.osError)
}

let baseNs = MonotonicClock.now()
let sink: TraceWriter
if let path = options.tracePath {
    do {
        sink = try TraceWriter.file(path: path, format: options.format)
    } catch {
        fail("\(error)", code: SysExits.cantCreate)
    }
} else {
    let terminal = isatty(1) == 1
    sink = TraceWriter(format: options.format, fd: 1, color: options.color, immediate: terminal, baseNs: baseNs,
                       width: terminal ? TerminalWidth.columns(fd: 1) : nil)
}

do {
    let run = try WatchRun(options: options, sink: sink, baseNs: baseNs)
    let stopper = run.stopper
    try signals.start { _ in stopper.requestStop() }
    try run.run()
} catch {
    sink.flush()
    fail("\(error)", code: SysExits.code(for: error))
}
sink.flush()
exit(0)
