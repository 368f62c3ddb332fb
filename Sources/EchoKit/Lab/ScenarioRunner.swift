import SocketKit
import TCPTrace
import WireFaults

/// Runs a scenario, retrying up to its `maxTries` while a try does not match.
public struct ScenarioOutcome: Sendable {
    public var scenario: String
    public var events: [TraceEvent]
    public var verdict: ScenarioVerdict
    /// Tries it took (1 when the first matched); equals maxTries when none did.
    public var tries: Int
    public var slowMotion: Bool
    public var rttMicros: UInt32?
    /// The first try's verdict, for fidelity tables ("matched on the first try").
    public var firstTryOK: Bool
    /// The capture's one-line summary (segments, drops), when the wire was on.
    public var wireSummary: String?
    /// Every try's events, each tagged with its try (`attempt`); `events` is the judged one's.
    public var allTries: [TraceEvent] = []
}

public enum ScenarioRunner {
    /// Each try gets fresh sockets and a fresh collector; the last try's events are returned.
    /// - Parameters:
    ///   - wire: capture each try's segments (`--wire`), checked as part of the verdict.
    ///   - pcapPath: write the last try's capture there as pcapng.
    ///   - faults: `--drop/--delay/--duplicate`; with them, or for a fault scenario, each try goes
    ///     over the fault wire, whose relay is the capture (ScenarioRunner+Faults).
    public static func run(_ scenario: any LabScenario, slowMotion: Bool, wire: Bool = false, pcapPath: String? = nil,
                           faults: [FaultRule] = [], progress: ((String) -> Void)? = nil, live: LabLiveView? = nil) -> ScenarioOutcome {
        var outcome: ScenarioOutcome?
        var allTries: [TraceEvent] = []
        let rules = faultRules(scenario, extra: faults)
        let onFaultWire = scenario is any FaultScenario || !rules.isEmpty
        for attempt in 1...max(1, scenario.maxTries) {
            live?.begin(attempt: attempt)
            var failure: String?
            var capture: WireTracer?
            var faultWire: FaultWire?
            if onFaultWire {
                do { faultWire = try FaultWire(rules: rules, insidePrivateNamespace: SlowMotion.isInsideNamespace) } catch { failure = "fault wire: \(error)" }
            } else if wire {
                do { capture = try WireTracer() } catch { failure = "wire capture: \(error)" }
            }
            let lab = LabRun(slowMotion: slowMotion, wire: capture, progress: progress, live: live)
            if let faultWire { lab.use(faultWire) }
            // The segments shown as they happen, beside the states, when a terminal watches
            // (ended by lab.finish()).
            if let live, live.printsRows, let source = faultWire.map({ LabLiveFeed.Source.relay($0.relay) }) ?? capture.map({ .capture($0) }) {
                lab.liveFeed = LabLiveFeed.start(source, live: live)
            }
            if failure == nil {
                do {
                    try scenario.run(lab)
                } catch {
                    failure = "\(error)"
                }
            }
            lab.finish()
            var events = lab.collector.events
            var checks: [WireCheck]?
            var summary: String?
            if let capture {
                do {
                    let run = try capture.finish(events: events, pcapPath: pcapPath)
                    events = run.events
                    checks = SegmentExpectations.check(scenario.name, segments: run.segments)
                    summary = run.summary
                    if run.statistics.drops > 0 { failure = failure ?? "the kernel dropped \(run.statistics.drops) captured segments" }
                } catch {
                    failure = failure ?? "--pcap: \(error)"
                }
            }
            if let faultWire {
                let result = finish(faultWire, scenario, lab: lab, events: events, pcapPath: pcapPath)
                (events, checks, summary) = (result.events, result.checks, result.summary)
                failure = failure ?? result.failure
            }
            events = CausalOrder.apply(events).map { event in
                var event = event
                event.attempt = attempt
                return event
            }
            allTries += events
            let verdict = ScenarioVerdict.judge(scenario, events: events, slowMotion: slowMotion, failure: failure, wireChecks: checks)
            outcome = ScenarioOutcome(scenario: scenario.name, events: events, verdict: verdict, tries: attempt,
                                      slowMotion: slowMotion, rttMicros: lab.measuredRTTMicros,
                                      firstTryOK: outcome?.firstTryOK ?? verdict.ok, wireSummary: summary, allTries: allTries)
            if verdict.ok { break }
            if attempt < scenario.maxTries { progress?("try \(attempt) did not match (\(failure ?? "sequence differs")); trying again") }
        }
        return outcome!
    }
}
