import Glibc
import SocketKit
import TCPTrace
import WireFaults

extension ScenarioRunner {
    /// The faults a run of `scenario` needs: its own, then the command line's.
    static func faultRules(_ scenario: any LabScenario, extra: [FaultRule]) -> [FaultRule] {
        ((scenario as? any FaultScenario)?.faultRules ?? []) + extra
    }

    /// Ends one try on the fault wire: the relay's record becomes the try's segments (it is the
    /// capture point), joined with the lab's events and judged by the scenario's own checks.
    static func finish(_ wire: FaultWire, _ scenario: any LabScenario, lab: LabRun, events: [TraceEvent],
                       pcapPath: String?) -> (events: [TraceEvent], checks: [WireCheck]?, summary: String?, failure: String?) {
        do {
            // The lab's cleanup (RSTs for leftover sockets) comes after it stopped watching.
            let run = try wire.finish(events: events, cutAtNs: lab.stoppedWatchingNs,
                                      cutReason: "when the lab stopped watching, before its cleanup reset the leftover sockets",
                                      pcapPath: pcapPath)
            let checks = (scenario as? any FaultScenario)?.wireChecks(run.segments, events: run.events)
                ?? SegmentExpectations.check(scenario.name, segments: run.segments)
            return (run.events, checks, run.summary, nil)
        } catch {
            return (events, nil, nil, "--pcap: \(error)")
        }
    }
}
