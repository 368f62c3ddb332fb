import EchoKit
import Glibc
import SocketKit
import TCPTrace

// EchoClient: argument parsing and wiring only; the commands live in EchoKit/Commands.

let command = "EchoClient"
let scanner = ArgumentScanner(command: command, options: [
    OptionSpec("--host", value: "ADDR", help: "server address: IPv4, IPv6 (::1) or a name (default 127.0.0.1)"),
    OptionSpec("--port", short: "-p", value: "N", help: "server port (default 7007)"),
] + OptionSpec.traceOptions(verboseHelp: "also trace each connect, send, recv, shutdown and close (syscall events) and the bytes sent/received (escaped)") + [
    OptionSpec("--timeout", value: "SECONDS", help: "give up on connect or a silent server after SECONDS"),
    OptionSpec("--expect", value: "echo|any", help: "echo (default): the reply must be the echo, else exit 1 with a verdict; any: send, half-close, print what comes back (escaped) until the peer closes, exit 0"),
    OptionSpec("--demo", help: "run a server and a client in-process and show both sides' states"),
    OptionSpec("--merge", help: "merge JSON trace files given as arguments into one ladder: the connections seen from both ends (client and server addresses swapped), or all when none pair"),
    OptionSpec("--merge-all", help: "with --merge: every connection in the files, paired or not (listeners too)"),
    OptionSpec("--scenario", value: "NAME|list", help: "run a lab scenario on loopback (both endpoints) and judge it; 'list' names them"),
    OptionSpec("--slow-motion", value: "on|off|auto", help: "scenario in a namespace whose loopback is slowed to ~1 ms/byte (default auto)"),
    OptionSpec("--repeat", value: "N", help: "run the scenario N times (1-1000) and print a fidelity table"),
] + PictureOptions.specs + WireOption.options + FaultOptions.specs + LoadCommand.options + OptionSpec.standardOptions, allowsPositionals: true)

let usage = "EchoClient [--host ADDR] [--port N] [--trace text|json|off] [--trace-file PATH] [--trace-verbose] [--kernel-trace auto|on|off] [--no-color] [--timeout SECONDS] [--expect echo|any] [--demo] [--merge [--merge-all] FILE...] [--scenario NAME|list [--slow-motion on|off|auto] [--repeat N]] [--wire auto|on|off] [--pcap FILE] [--drop SEL] [--delay SEL=DURATION] [--duplicate SEL] [--picture FILE.svg|FILE.html] [--state-diagram FILE.svg] [--version] [--help] [MESSAGE ...]\n       EchoClient --load [--connections N] [--duration SECONDS] [--size BYTES] [--mode pingpong|stream|connect] [--threads N] [--report text|json] [--timeout SECONDS] [--host ADDR] [--port N]"

let arguments = scanner.parseCommandLineOrExit(
    summary: "Echo client that logs every TCP state its socket passes through.", usage: usage, footer: """
    With MESSAGEs: sends each (newline-terminated), prints each echo, half-closes, drains, closes.
    Without: stdin goes to the server and the echo to stdout, like nc; EOF on stdin half-closes.
    With --expect any: the messages (or stdin) go out, then a half-close; whatever comes back is printed escaped until the peer closes, for any request/response server.
    --demo, --scenario, --merge and --load are separate modes: give at most one. The trace goes to stderr (or --trace-file) in every mode; stdout carries the echo, the merged ladder and the load report.
    Faults (--demo, --scenario): --drop/--delay/--duplicate put the client and the server in network namespaces of their own, joined by a relay that drops, holds or copies the segment SEL names. \(FaultOptions.grammar).
    Exit status: 0 when every byte came back identical (--expect any: the peer closed cleanly); 1 when the echo differed (the verdict says what came back) or a scenario did not match; 64 usage; 68 unknown host; 69 refused/unreachable/reset, or the server closed before the end of stdin; 73 cannot create an output file (--trace-file, --picture, --state-diagram, --pcap), checked before the run starts; 75 timeout; 71 other OS errors; 130 SIGINT (143 SIGTERM): closed cleanly (a scenario prints what it saw), a second signal exits at once.
    """)

signal(SIGPIPE, SIG_IGN)

// The one way out: every mode returns its status or throws, and CommandExit finishes the trace
// session (sink, kernel source, followers, verdict) before the last line and exit().
CommandExit.run(command, settleSeconds: 0.2) {
    try ClientModes.check(arguments)
    let options = try CommandLineTrace.options(arguments)
    let pictures = try PictureOptions.options(arguments)
    if !pictures.isEmpty && !(arguments.has("--demo") || arguments.has("--merge") || arguments.string("--scenario") != nil) {
        throw UsageError("--picture and --state-diagram go with --demo, --scenario or --merge")
    }
    var config = EchoClientConfiguration()
    config.host = arguments.string("--host") ?? "127.0.0.1"
    config.port = try arguments.port(default: 7007)
    if let timeout = try arguments.seconds("--timeout") {
        config.connectTimeoutSeconds = timeout
        config.ioTimeoutSeconds = timeout
    }
    let expect: ExpectMode = try arguments.choice("--expect", default: .echo)
    // Before anything runs: a file that cannot be written fails now, not after the run.
    try OutputPaths.check(arguments)
    if let name = arguments.string("--scenario") {
        // Ctrl-C shows what the lab saw so far: the signals are blocked now, while this is the
        // only thread, and read once the run starts.
        let signals = name == "list" ? nil : try TerminationSignals(command: command)
        return try ScenarioCommand.run(name: name, arguments: arguments, options: options, pictures: pictures, signals: signals)
    }
    if arguments.has("--load") {
        return try LoadCommand.run(arguments, host: config.host, port: config.port)
    }
    if arguments.has("--merge-all") && !arguments.has("--merge") { throw UsageError("--merge-all goes with --merge") }
    if arguments.has("--merge") {
        return try ClientCommands.merge(paths: arguments.positionals, all: arguments.has("--merge-all"), options: options, pictures: pictures)
    }
    let faults = try FaultOptions.parse(arguments)
    if arguments.has("--demo") {
        let wire = faults.isEmpty ? try WireOption.parse(arguments, defaultMode: .auto)
            .resolve(command: command, arguments: Array(CommandLine.arguments.dropFirst()), loopbackReady: false)
            : try FaultOptions.wire(arguments, rules: faults)
        return try ClientCommands.demo(host: config.host, port: arguments.string("--port") == nil ? 0 : config.port, options: options,
                                       pictures: pictures, wire: wire, faults: faults)
    }
    if !faults.isEmpty { throw UsageError("--drop, --delay and --duplicate go with --demo or --scenario") }
    // SIGINT/SIGTERM wake the client's waits through an eventfd; it closes cleanly and exits
    // 128 + signal. A second signal exits at once (the session's exit handler still flushes).
    // The signalfd exists before connect(); no thread has started yet, so every later one
    // inherits the blocked mask.
    let signals = try TerminationSignals(command: command)
    let interruption = try ClientInterruption()
    try signals.start { interruption.interrupt(signal: $0) }
    return try withExtendedLifetime(signals) {
        try ClientCommands.echo(config: config, messages: arguments.positionals, expect: expect, options: options,
                                wire: try WireOption.parse(arguments, defaultMode: .off),
                                interruption: interruption)
    }
}
