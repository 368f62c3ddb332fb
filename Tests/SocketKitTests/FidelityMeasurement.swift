import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// docs/FIDELITY.md (section 3): how late the unprivileged tracer sees each state the kernel
/// set (observed ts − kernel ts) and how often it can only infer it. A measurement, not a check:
/// runs only with SOCKETKIT_FIDELITY_RUNS=N (exchanges per scenario) as root.
@Suite(.serialized, .enabled(if: Oracle.available && getenv("SOCKETKIT_FIDELITY_RUNS") != nil,
                             "measurement: set SOCKETKIT_FIDELITY_RUNS=N and run as root"))
struct FidelityMeasurement {
    @Test func unprivilegedDetectionLatency() throws {
        let runs = Int(String(cString: getenv("SOCKETKIT_FIDELITY_RUNS"))) ?? 200
        struct Key: Hashable { var scenario: String; var side: TraceSide; var state: TCPState }
        var latencies: [Key: [UInt64]] = [:]
        var inferred: [Key: Int] = [:]
        var seen: [Key: Int] = [:]
        let oracle = try KernelTracepoint(pagesPerCPU: 512)
        defer { oracle.close() }
        for scenario in Oracle.Scenario.allCases {
            for _ in 0..<runs {
                let run = try Oracle.run(scenario, kernel: nil, oracle: oracle)
                for socket in Oracle.sockets(run) {
                    for state in Set(socket.expectedStates) {
                        let key = Key(scenario: scenario.rawValue, side: socket.side, state: state)
                        seen[key, default: 0] += 1
                        guard let event = socket.stateEvents.first(where: { $0.to == state }) else { continue }
                        if event.source == .inferred {
                            inferred[key, default: 0] += 1
                        } else if let entered = socket.kernelEntry(state), event.timestampNs >= entered {
                            latencies[key, default: []].append(event.timestampNs - entered)
                        }
                    }
                }
            }
        }
        func us(_ ns: UInt64) -> String { "\(ns / 1000).\((ns % 1000) / 100)" }
        var lines = ["| scenario | side | state | kernel set it | observed | inferred | p50 µs | p99 µs |",
                     "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for key in seen.keys.sorted(by: { ($0.scenario, $0.side.rawValue, $0.state.name) < ($1.scenario, $1.side.rawValue, $1.state.name) }) {
            let values = (latencies[key] ?? []).sorted()
            let p50 = values.isEmpty ? "–" : us(values[values.count / 2])
            let p99 = values.isEmpty ? "–" : us(values[min(values.count - 1, values.count * 99 / 100)])
            lines.append("| \(key.scenario) | \(key.side.rawValue) | \(key.state.name) | \(seen[key]!) | \(values.count) | \(inferred[key] ?? 0) | \(p50) | \(p99) |")
        }
        print(lines.joined(separator: "\n"))
    }
}
