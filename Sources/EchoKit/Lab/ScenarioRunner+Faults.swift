import Glibc
import SocketKit
import TCPTrace
import WireFaults

extension ScenarioRunner {
    /// The faults a run of `scenario` needs: its own, then the command line's.
    static func faultRules(_ scenario: any LabScenario, extra: [FaultRule]) -> [FaultRule] {
        ((scenario as? any FaultScenario)?.faultRules ?? []) + extra
    }

    /// One try on the fault wire: the server's sockets in a namespace of their own, the relay
    /// between, and the relay's record as the run's segments (it is the capture point).
    static func faultTry(_ scenario: any LabScenario, rules: [FaultRule], pcapPath: String?,
                         progress: ((String) -> Void)?, attempt: Int, firstTryOK: Bool?) -> ScenarioOutcome {
        var failure: String?
        var wire: FaultWire?
        do { wire = try FaultWire(rules: rules, insidePrivateNamespace: SlowMotion.isInsideNamespace) } catch { failure = "fault wire: \(error)" }
        let lab = LabRun(slowMotion: false, progress: progress)
        if let wire { lab.use(wire) }
        if failure == nil {
            do { try scenario.run(lab) } catch { failure = "\(error)" }
        }
        lab.finish()
        var events = lab.collector.events
        var checks: [WireCheck]?
        var summary: String?
        if let wire {
            // The lab's cleanup (RSTs for leftover sockets) comes after it stopped watching.
            let cut = lab.stoppedWatchingNs
            do {
                let run = try wire.finish(events: events, cutAtNs: cut, cutReason: "when the lab stopped watching, before its cleanup reset the leftover sockets",
                                          pcapPath: pcapPath)
                events = run.events
                checks = (scenario as? any FaultScenario)?.wireChecks(run.segments, events: run.events)
                    ?? SegmentExpectations.check(scenario.name, segments: run.segments)
                summary = run.summary
            } catch {
                failure = failure ?? "--pcap: \(error)"
            }
        }
        let verdict = ScenarioVerdict.judge(scenario, events: events, slowMotion: false, failure: failure, wireChecks: checks)
        return ScenarioOutcome(scenario: scenario.name, events: events, verdict: verdict, tries: attempt, slowMotion: false,
                               rttMicros: lab.measuredRTTMicros, firstTryOK: firstTryOK ?? verdict.ok, wireSummary: summary)
    }
}
