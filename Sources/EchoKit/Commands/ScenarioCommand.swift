
import Glibc
import SocketKit
import TCPTrace
import WireFaults

/// `EchoClient --scenario list|NAME [--trace text|json] [--slow-motion on|off|auto] [--repeat N]`.
public enum ScenarioCommand {
    public static func run(name: String, arguments: ParsedArguments, options: CommandLineTrace, pictures: PictureOptions) throws -> Int32 {
        if name == "list" {
            let width = ScenarioCatalog.names.map(\.count).max() ?? 0
            for scenario in ScenarioCatalog.all {
                print(scenario.name + String(repeating: " ", count: width - scenario.name.count + 2) + scenario.summary)
            }
            return 0
        }
        guard let scenario = ScenarioCatalog.named(name) else {
            throw UsageError("--scenario: '\(ByteEscaping.escape(name))' is not one of list, \(ScenarioCatalog.names.joined(separator: ", "))")
        }
        let mode: SlowMotionMode = try arguments.choice("--slow-motion", default: .auto)
        let runs = try arguments.integer("--repeat", range: 1...1000) ?? 1
        let faults = try FaultOptions.parse(arguments)
        let onFaultWire = scenario is any FaultScenario || !faults.isEmpty
        let (status, wire) = onFaultWire ? try faultWire(arguments, rules: ScenarioRunner.faultRules(scenario, extra: faults))
            : (try slowMotion(mode), try WireOption.parse(arguments, defaultMode: .auto)
                .resolve(command: "EchoClient", arguments: Array(CommandLine.arguments.dropFirst()), loopbackReady: true))
        let live = options.format == .text && isatty(2) == 1
        let progress: (String) -> Void = { text in
            guard options.format == .text else { return }
            SignalSafeOutput.line("… \(text)")
        }
        if runs == 1 {
            let outcome = ScenarioRunner.run(scenario, slowMotion: status.active, wire: wire.active, pcapPath: wire.pcapPath,
                                             faults: faults, progress: progress)
            switch options.format {
            case .json:
                ScenarioReport.json(outcome, scenario: scenario, slowMotion: status).forEach { print($0) }
            case .text:
                print(ScenarioReport.text(outcome, scenario: scenario, slowMotionLine: status.line(rttMicros: outcome.rttMicros) + "\n" + wire.line,
                                          color: options.color && isatty(1) == 1, width: TerminalWidth.columns(fd: 1)), terminator: "")
            case .off:
                print(ScenarioReport.verdictText(outcome, scenario: scenario), terminator: "")
            }
            let tries = "\(outcome.tries) \(outcome.tries == 1 ? "try" : "tries")"
            let verdict: LadderPicture.Verdict = outcome.verdict.ok ? .matched("MATCHED after \(tries)")
                : .differs("DID NOT MATCH after \(tries)")
            let picture = LadderPicture(title: "Scenario \(scenario.name): \(scenario.summary)", verdict: verdict, timeline: outcome.events)
            try ClientCommands.writePictures(pictures, picture, options: options)
            return outcome.verdict.ok ? 0 : 1
        }
        if !pictures.isEmpty { throw UsageError("--picture and --state-diagram draw one run: leave out --repeat") }
        var table = FidelityTable(scenario: scenario.name)
        var rtt: UInt32?
        for run in 1...runs {
            let outcome = ScenarioRunner.run(scenario, slowMotion: status.active, wire: wire.active, pcapPath: wire.pcapPath,
                                             faults: faults, progress: live ? progress : nil)
            table.add(outcome)
            rtt = rtt ?? outcome.rttMicros
            if options.format == .json { print(ScenarioReport.summaryJSON(outcome, scenario: scenario, slowMotion: status)) }
            if live { progress("run \(run)/\(runs): \(outcome.verdict.ok ? "matched" : "did not match")") }
        }
        if options.format == .json {
            print(table.json(slowMotion: status))
        } else {
            print(status.line(rttMicros: rtt))
            print(wire.line)
            print(table.text(), terminator: "")
        }
        return table.matched == table.runs ? 0 : 1
    }

    /// The fault wire: real speed inside the private namespace, the relay as the capture point.
    static func faultWire(_ arguments: ParsedArguments, rules: [FaultRule]) throws -> (SlowMotionStatus, WireOption) {
        let wire = try FaultOptions.wire(arguments, rules: rules)
        return (SlowMotionStatus(active: false, note: "real speed (the fault wire's own devices carry the run, not lo)"), wire)
    }

    /// Sets up slow motion: inside the re-executed child, or decides (and re-executes) here.
    public static func slowMotion(_ mode: SlowMotionMode) throws -> SlowMotionStatus {
        let status: SlowMotionStatus
        if SlowMotion.isInsideNamespace {
            status = SlowMotion.setUpInside()
        } else {
            switch SlowMotion.plan(mode) {
            case .reexecute(let unshare):
                try SlowMotion.reexecute(unshare: unshare, arguments: Array(CommandLine.arguments.dropFirst()))
            case .realSpeed(let fallback):
                status = fallback
            }
        }
        if mode == .on && !status.active {
            throw CommandFailure("slow motion unavailable: \(status.note) (try --slow-motion auto or off)", exitStatus: SysExits.unavailable)
        }
        return status
    }
}
