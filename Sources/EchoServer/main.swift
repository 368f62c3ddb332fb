import EchoKit
import Glibc
import SocketKit
import TCPTrace

// EchoServer: argument parsing and wiring only; the engines live in EchoKit.

let command = "EchoServer"
let scanner = ArgumentScanner(command: command, options: [
    OptionSpec("--host", value: "ADDR", help: "address to listen on: IPv4, IPv6 (::1) or a name (default 127.0.0.1)"),
    OptionSpec("--port", short: "-p", value: "N", help: "port (default 7007; 0 = any free port, shown in the LISTEN line)"),
] + OptionSpec.traceOptions(verboseHelp: "also trace each recv, send, shutdown and close, the bytes (escaped) and each backpressure pause") + [
    OptionSpec("--close-wait-warn", value: "SECONDS", help: "warn when a connection sits in CLOSE_WAIT this long (default 5)"),
    OptionSpec("--threads", value: "N", help: "event loops sharing the one listener (default: one per CPU this process may use: affinity mask, cgroup quota)"),
    OptionSpec("--backlog", value: "N", help: "listen(2) backlog (default 1024)"),
    OptionSpec("--max-connections", value: "N", help: "close connections beyond N at once, logged (default 100000)"),
    OptionSpec("--idle-timeout", value: "SECONDS", help: "close connections idle this long (default: never)"),
    OptionSpec("--drain-timeout", value: "SECONDS", help: "on SIGINT/SIGTERM, wait this long for connections to finish (default 5)"),
] + WireOption.options + OptionSpec.standardOptions, allowsPositionals: false)

let usage = "EchoServer [--host ADDR] [--port N] [--trace text|json|off] [--trace-file PATH] [--trace-verbose] [--no-color] [--kernel-trace auto|on|off] [--close-wait-warn SECONDS] [--threads N] [--backlog N] [--max-connections N] [--idle-timeout SECONDS] [--drain-timeout SECONDS] [--wire auto|on|off] [--pcap FILE] [--version] [--help]"

let arguments = scanner.parseCommandLineOrExit(
    summary: "Echo server that logs every TCP state each connection passes through.", usage: usage, footer: """
    SIGINT/SIGTERM: stop accepting, let connections finish (--drain-timeout), print a summary, exit 0; a second signal exits at once.
    Exit status: 0 ok; 64 usage; 68 unknown host; 69 port in use or address not available; 73 cannot create an output file (--trace-file, --pcap), checked before the server starts; 77 permission denied; 71 other OS errors.
    """)

signal(SIGPIPE, SIG_IGN)
// SIGINT/SIGTERM are blocked and routed to a signalfd before any thread starts (the trace
// writer, the kernel tracepoint, the loops): a signal can never be lost or take the default
// action. No signalfd, no server: exit 71 with the call and errno.
let signals: TerminationSignals
do {
    signals = try TerminationSignals(command: command)
} catch {
    SysExits.fail(command, "\(error)", code: SysExits.osError)
}

let trace: CommandLineTrace
let wire: WireOption
var config = EchoServerConfiguration()
do {
    trace = try CommandLineTrace.options(arguments)
    // Off by default: capture copies every segment, a cost a long-running server opts into.
    wire = try WireOption.parse(arguments, defaultMode: .off)
    config.host = arguments.string("--host") ?? "127.0.0.1"
    config.port = try arguments.port(default: 7007)
    if let threads = try arguments.integer("--threads", range: 1...256) { config.setThreads(threads) }
    config.backlog = Int32(try arguments.integer("--backlog", range: 0...65535) ?? Int(config.backlog))
    config.maxConnections = try arguments.integer("--max-connections", range: 1...10_000_000) ?? config.maxConnections
    config.idleTimeoutSeconds = try arguments.seconds("--idle-timeout")
    config.drainTimeoutSeconds = try arguments.seconds("--drain-timeout") ?? config.drainTimeoutSeconds
} catch {
    SysExits.fail(command, "\(error) (see '\(command) --help')", code: SysExits.usage)
}

// The one way out: CommandExit finishes the trace session (followers, kernel source, sink)
// before the last stderr line and exit(), whether the run ends in a summary or an error.
CommandExit.run(command) {
    // Every output file is checked before the server starts: one line, exit 73.
    try OutputPaths.check(arguments)
    let writer = try trace.makeSink()
    // With the live wire, segments come from the capture thread: written in time order.
    let session = TraceSession(sink: wire.mode == .off ? writer : TimeOrderedSink(target: writer))
    session.makeCurrent()
    // The tracepoint opens before bind() so it sees the listener's CLOSE → LISTEN; its note is
    // emitted only once bind() succeeded (a busy port stays a one-line error).
    let (kernel, kernelNote) = try trace.openKernelSource(command: command, sink: session.sink, side: .server)
    session.attach(kernel)
    let tracer = StateTracer(sink: session.sink, side: .server, verbose: trace.verbose,
                             closeWaitWarnSeconds: trace.closeWaitWarnSeconds, firstConnectionID: 0, kernel: kernel,
                             ownersMustNotBlock: true)
    session.add(tracer)
    let server = EchoServer(configuration: config, tracer: trace.format == .off ? nil : tracer)
    let address: SocketAddress
    do {
        address = try server.bind()
    } catch let error as SystemCallError where error.call == "bind" && error.errno == EACCES && config.port < 1024 {
        SysExits.fail(command, "\(error) (ports below 1024 need root or CAP_NET_BIND_SERVICE; try --port 7007)",
                      code: SysExits.code(for: error))
    }
    let filterNote = kernel.map { "; " + $0.restrict(toPorts: [address.port]) } ?? ""
    if let kernelNote {
        session.sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: 0, kind: .info, cause: kernelNote + filterNote))
    }
    session.attach(try wire.startLive(command: command, side: .server, serverPort: address.port, sink: session.sink,
                                      local: address, peer: nil), side: .server)
    if trace.format == .off || trace.path != nil {
        SignalSafeOutput.line("\(command): listening on \(address) (\(config.loopSizing))")
    }
    // The first signal stops gracefully, a second one stops at once: the loops close their
    // connections and return, and the trace is written out on this thread as after a drain. Signals that arrived during start-up wait in the signalfd
    // (created first thing above) and are read now, by our own thread.
    let drainSeconds = config.drainTimeoutSeconds
    let traceFormat = trace.format
    let sink = session.sink
    try signals.start { _ in
        // The terminal echoed `^C` without a newline: end that line before anything else prints.
        if isatty(2) == 1 { SignalSafeOutput.line("") }
        let open = server.stats.snapshot.open
        if open > 0 {
            let seconds = drainSeconds == drainSeconds.rounded() ? String(Int(drainSeconds)) : String(drainSeconds)
            let message = "draining \(open) connection\(open == 1 ? "" : "s"), up to \(seconds) s; Ctrl-C again to quit"
            if traceFormat == .json {
                sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: 0, kind: .info, cause: message))
                sink.flush()
            } else {
                SignalSafeOutput.line("\(command): \(message)")
            }
        }
        server.stop()
    } onSecond: { signo in
        server.abort(signal: signo)
    }
    try withExtendedLifetime(signals) { try server.run() }
    // In JSON mode every line of the trace stream is JSON: the summary is an event there.
    if trace.format == .json {
        session.sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .server, conn: 0, kind: .info,
                                     cause: "stopped: \(server.stats.snapshot)"))
    }
    session.finish()
    if trace.format != .json || trace.path != nil {
        SignalSafeOutput.line("\(command): stopped: \(server.stats.snapshot)")
    }
    return server.abortedBy.map { 128 + $0 } ?? 0
}
