import Glibc
import SocketKit
import TCPTrace

/// TCPWatch's command line (the option names are a contract, issue 21).
public struct WatchOptions: Sendable {
    public var selection = WatchSelection()
    public var durationSeconds: Double?
    public var format: TraceFormat = .text
    public var tracePath: String?
    public var picturePath: String?
    public var wire: WireMode = .off
    public var pcapPath: String?
    public var kernelTrace: KernelTraceMode = .auto
    public var closeWaitWarnSeconds = 1.0
    public var summary = false
    public var color = false

    public static let specs: [OptionSpec] = [
        OptionSpec("--port", short: "-p", value: "N", help: "watch sockets whose local or remote port is N (repeatable)"),
        OptionSpec("--pid", value: "PID", help: "watch the sockets process PID holds (and its listeners' children)"),
        OptionSpec("--process", value: "NAME", help: "watch the sockets of processes whose command (/proc/PID/comm) is NAME"),
        OptionSpec("--all", help: "watch every TCP socket of this network namespace"),
        OptionSpec("--duration", value: "SECONDS", help: "stop after SECONDS and exit 0 (default: until Ctrl-C)"),
        OptionSpec("--trace", value: "text|json", help: "output format on stdout (default text); json: every line, stdout and stderr, is JSON"),
        OptionSpec("--trace-file", value: "PATH", help: "write the events to PATH instead of stdout"),
        OptionSpec("--no-color", help: "never color the text (also: NO_COLOR, or not a terminal)"),
        OptionSpec("--picture", value: "FILE", help: "on exit, draw the ladder of the first watched connections into FILE (.svg or .html)"),
        OptionSpec("--wire", value: "auto|on|off", help: "capture the watched ports' segments (AF_PACKET, root): auto falls back, on fails without (default off)"),
        OptionSpec("--pcap", value: "FILE", help: "also write the captured segments to FILE (pcapng; implies --wire on)"),
        OptionSpec("--kernel-trace", value: "auto|on|off", help: "every transition from the sock:inet_sock_set_state tracepoint (root): auto (default) falls back, on fails without"),
        OptionSpec("--close-wait-warn", value: "SECONDS", help: "warn when a socket sits in CLOSE_WAIT this long (default 1)"),
        OptionSpec("--summary", help: "also print, each second, one line: the watched sockets per state and the oldest one's time in it"),
    ] + OptionSpec.standardOptions

    public static let usage = "TCPWatch (--port N ... | --pid PID | --process NAME | --all) [--duration SECONDS] [--trace text|json] [--trace-file PATH] [--picture FILE] [--wire auto|on|off] [--pcap FILE] [--kernel-trace auto|on|off] [--close-wait-warn SECONDS] [--summary] [--no-color] [--version] [--help]"

    public static func parse(_ arguments: ParsedArguments) throws -> WatchOptions {
        var options = WatchOptions()
        for text in arguments.valueLists["--port"] ?? [] {
            guard let port = UInt16(text), port > 0 else {
                throw UsageError("--port: '\(ByteEscaping.escape(text))' is not a port number (1-65535)")
            }
            options.selection.ports.insert(port)
        }
        if let text = arguments.string("--pid") {
            guard let pid = Int32(text), pid > 0 else { throw UsageError("--pid: '\(ByteEscaping.escape(text))' is not a process id") }
            options.selection.pids = [pid]
        }
        if let name = arguments.string("--process") {
            guard !name.isEmpty, name.utf8.count <= 15 else {
                throw UsageError("--process: '\(ByteEscaping.escape(name))' is not a command name (1 to 15 bytes, as in /proc/PID/comm)")
            }
            options.selection.processName = name
        }
        options.selection.all = arguments.has("--all")
        let narrowed = !options.selection.ports.isEmpty || options.selection.pids != nil || options.selection.processName != nil
        if options.selection.all && narrowed { throw UsageError("--all watches every socket: drop --port, --pid and --process, or --all") }
        if !options.selection.all && !narrowed { throw UsageError("say what to watch: --port N, --pid PID, --process NAME or --all") }
        options.durationSeconds = try arguments.seconds("--duration")
        guard let format = TraceFormat(rawValue: arguments.string("--trace") ?? "text"), format != .off else {
            throw UsageError("--trace: '\(ByteEscaping.escape(arguments.string("--trace") ?? ""))' is not one of text|json")
        }
        options.format = format
        options.tracePath = arguments.string("--trace-file")
        if let picture = arguments.string("--picture"), PictureFile.format(of: picture) == nil {
            throw UsageError("--picture: '\(ByteEscaping.escape(picture))' must end in .svg or .html")
        }
        options.picturePath = arguments.string("--picture")
        options.pcapPath = arguments.string("--pcap")
        options.wire = try arguments.choice("--wire", default: options.pcapPath == nil ? .off : .on)
        if options.pcapPath != nil && options.wire == .off { throw UsageError("--pcap needs the capture: drop --wire off") }
        options.kernelTrace = try arguments.choice("--kernel-trace", default: .auto)
        options.closeWaitWarnSeconds = try arguments.seconds("--close-wait-warn") ?? 1
        options.summary = arguments.has("--summary")
        options.color = options.format == .text && options.tracePath == nil && isatty(1) == 1 && getenv("NO_COLOR") == nil
            && !arguments.has("--no-color") && getenv("TERM").map { String(cString: $0) } != "dumb"
        return options
    }

    /// Whether the raw command line asks for JSON, read before parsing so that even a usage
    /// error comes out as JSON.
    public static func wantsJSON<C: Collection>(_ arguments: C) -> Bool where C.Element == String {
        let list = Array(arguments)
        return list.contains("--trace=json") || zip(list, list.dropFirst()).contains { $0 == "--trace" && $1 == "json" }
    }
}
