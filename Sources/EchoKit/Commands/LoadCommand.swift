
import Glibc
import SocketKit
import TCPTrace

/// `EchoClient --load ...`: reads the load options, runs `LoadGenerator`, prints its report.
public enum LoadCommand {
    public static let options = [
        OptionSpec("--load", help: "load mode: many connections against an echo server, every byte verified"),
        OptionSpec("--connections", value: "N", help: "load: concurrent connections or connect slots (default 100)"),
        OptionSpec("--duration", value: "SECONDS", help: "load: measured time (default 10)"),
        OptionSpec("--size", value: "BYTES", help: "load: message or stream chunk size (default 64)"),
        OptionSpec("--mode", value: "pingpong|stream|connect", help: "load: traffic pattern (default pingpong)"),
        OptionSpec("--threads", value: "N", help: "load: worker threads (default: one per CPU this process may use)"),
        OptionSpec("--report", value: "text|json", help: "load: report as text lines or one JSON object (default text)"),
    ]

    enum ReportFormat: String, CaseIterable { case text, json }

    /// Exit status: 0 when every byte came back and nothing failed, 1 otherwise.
    public static func run(_ arguments: ParsedArguments, host: String, port: UInt16) throws -> Int32 {
        var config = LoadConfiguration()
        config.host = host
        config.port = port
        config.connections = try arguments.integer("--connections", range: 1...20_000) ?? config.connections
        config.durationSeconds = try arguments.seconds("--duration") ?? config.durationSeconds
        config.size = try arguments.integer("--size", range: 1...(1 << 20)) ?? config.size
        config.mode = try arguments.choice("--mode", default: config.mode)
        config.threads = try arguments.integer("--threads", range: 1...256)
        config.timeoutSeconds = try arguments.seconds("--timeout") ?? config.timeoutSeconds
        let format: ReportFormat = try arguments.choice("--report", default: .text)
        let generator = try LoadGenerator(configuration: config)
        let report = try generator.run()
        print(format == .json ? report.json : report.text)
        return report.ok ? 0 : 1
    }
}
