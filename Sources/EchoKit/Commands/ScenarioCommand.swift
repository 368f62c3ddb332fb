
import Glibc
import SocketKit
import TCPTrace
import WireFaults

/// `EchoClient --scenario list|NAME [--trace text|json] [--slow-motion on|off|auto] [--repeat N]`.
public enum ScenarioCommand {
    /// - Parameter signals: SIGINT/SIGTERM, blocked since main began; the lab starts reading
    ///   them once slow motion is settled (a re-execution must not find a thread running).
    public static func run(name: String, arguments: ParsedArguments, options: CommandLineTrace, pictures: PictureOptions,
                           signals: TerminationSignals? = nil) throws -> Int32 {
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
        if runs > 1 && !pictures.isEmpty { throw UsageError("--picture and --state-diagram draw one run: leave out --repeat") }
        let faults = try FaultOptions.parse(arguments)
        let onFaultWire = scenario is any FaultScenario || !faults.isEmpty
        let (status, wire) = onFaultWire ? try faultWire(arguments, rules: ScenarioRunner.faultRules(scenario, extra: faults))
            : (try slowMotion(mode), try WireOption.parse(arguments, defaultMode: .auto)
                .resolve(command: "EchoClient", arguments: Array(CommandLine.arguments.dropFirst()), loopbackReady: true))
        // The trace stream (stderr or --trace-file), opened before the run: the demo's stream.
        let stream = try TraceStream(options)
        let text = options.format == .text
        let progress: (String) -> Void = { line in
            guard text else { return }
            if stream.isTerminal { stream.status("… " + line, always: false) } else if options.path == nil { stream.write("… \(line)\n") }
        }
        let color = options.color && stream.isTerminal
        // Live rows only for a terminal: a file gets the ladder once, in causal order, at the end.
        let livePrint: (@Sendable (String) -> Void)? = text && stream.isTerminal && runs == 1 ? { @Sendable line in stream.write(line) } : nil
        let live = LabLiveView(color: color, width: stream.width, print: livePrint)
        try signals?.start { signo in interrupted(signo, scenario: scenario, live: live, stream: stream, options: options) }
        if runs == 1 {
            if text && stream.isTerminal {
                stream.write(wrap("Scenario \(scenario.name): \(scenario.summary)", stream.width) + "\n"
                             + wrap(wire.active || onFaultWire ? "Live, each state as it is read and each segment as it is captured (the full ladder, in causal order, follows):"
                                    : "Live, as each state is read (the full ladder, in causal order with the segments, follows):", stream.width)
                             + "\n")
            }
            let outcome = ScenarioRunner.run(scenario, slowMotion: status.active, wire: wire.active, pcapPath: wire.pcapPath,
                                             faults: faults, progress: progress, live: live)
            switch options.format {
            case .json:
                stream.write(ScenarioReport.json(outcome, scenario: scenario, slowMotion: status).joined(separator: "\n") + "\n")
            case .text:
                stream.write((stream.isTerminal ? "\n" : "")
                             + ScenarioReport.text(outcome, scenario: scenario, slowMotionLine: status.line(rttMicros: outcome.rttMicros) + "\n" + wire.line,
                                                   color: color, width: stream.width))
            case .off:
                stream.write(ScenarioReport.verdictText(outcome, scenario: scenario, width: stream.width))
            }
            let tries = "\(outcome.tries) \(outcome.tries == 1 ? "try" : "tries")"
            let verdict: LadderPicture.Verdict = outcome.verdict.ok ? .matched("MATCHED after \(tries)")
                : .differs("DID NOT MATCH after \(tries)")
            let picture = LadderPicture(title: "Scenario \(scenario.name): \(scenario.summary)", verdict: verdict, timeline: outcome.events)
            for line in try pictures.write(picture) where options.format != .json { stream.write("EchoClient: \(line)\n") }
            return outcome.verdict.ok ? 0 : 1
        }
        var table = FidelityTable(scenario: scenario.name)
        var rtt: UInt32?
        for run in 1...runs {
            let outcome = ScenarioRunner.run(scenario, slowMotion: status.active, wire: wire.active, pcapPath: wire.pcapPath,
                                             faults: faults, progress: progress, live: live)
            table.add(outcome)
            rtt = rtt ?? outcome.rttMicros
            if options.format == .json { stream.write(ScenarioReport.summaryJSON(outcome, scenario: scenario, slowMotion: status) + "\n") }
            progress("run \(run)/\(runs): \(outcome.verdict.ok ? "matched" : "did not match")")
        }
        if options.format == .json {
            stream.write(table.json(slowMotion: status) + "\n")
        } else {
            stream.write(wrap(status.line(rttMicros: rtt), stream.width) + "\n" + wrap(wire.line, stream.width) + "\n" + table.text())
        }
        return table.matched == table.runs ? 0 : 1
    }

    /// The fault wire: real speed inside the private namespace, the relay as the capture point.
    static func faultWire(_ arguments: ParsedArguments, rules: [FaultRule]) throws -> (SlowMotionStatus, WireOption) {
        let wire = try FaultOptions.wire(arguments, rules: rules)
        return (SlowMotionStatus(active: false, note: "real speed (the fault wire's own devices carry the run, not lo)"), wire)
    }

    /// Prose wrapped to a terminal's width (`nil`: one line, for files and pipes).
    static func wrap(_ text: String, _ width: Int?) -> String {
        width.map { TextWrap.paragraph(text, width: $0, indent: 2) } ?? text
    }

    /// Ctrl-C (or SIGTERM) during a run: what was seen so far, in causal order, the verdict
    /// "interrupted", and exit 128 + signal. Runs on the signal thread; the lab's thread and the
    /// live feed's are left as they are (exit ends them), the live view silenced first so that no
    /// live row lands after the report.
    static func interrupted(_ signo: Int32, scenario: any LabScenario, live: LabLiveView, stream: TraceStream,
                            options: CommandLineTrace) -> Never {
        live.silence()
        let attempt = live.attempt
        let events = CausalOrder.apply(live.currentTry)
        let seconds = Double(MonotonicClock.now() - live.startNs) / 1e9
        let signal = signo == SIGINT ? "Ctrl-C" : "SIGTERM"
        let tenths = Int((seconds * 10).rounded())
        let reason = "\(signal) after \(tenths / 10).\(tenths % 10) s, during try \(attempt)"
        switch options.format {
        case .json:
            // Every line stays a trace event: the last one says the run was interrupted, not judged.
            var last = TraceEvent(timestampNs: MonotonicClock.now(), side: .client, conn: 0, kind: .info,
                                  cause: "verdict: interrupted (\(reason)): scenario \(scenario.name) was not judged")
            last.attempt = attempt
            stream.write((events + [last]).map(JSONTraceRenderer.render).joined(separator: "\n") + "\n")
        case .text, .off:
            var text = "\n" + wrap("Scenario \(scenario.name): interrupted (\(reason)); what was seen so far:", stream.width) + "\n\n"
            if options.format == .text, !events.isEmpty {
                text += LadderRenderer(color: options.color && stream.isTerminal, width: stream.width).render(events).joined(separator: "\n")
                text += "\n\n" + LadderRenderer.legend(width: stream.width) + "\n\n"
            }
            text += "States each socket passed through ((…) = inferred):\n"
            let sequences = LadderRenderer.sequences(events)
            text += (sequences.isEmpty ? ["  none yet"] : sequences.map { "  " + $0 }).map { wrap($0, stream.width) }.joined(separator: "\n") + "\n"
            text += "Verdict: interrupted: \(scenario.name) was not judged\n"
            stream.write(text)
        }
        exit(128 + signo)
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
