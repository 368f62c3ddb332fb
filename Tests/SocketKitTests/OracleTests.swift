import Glibc
import TestSupport
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// The kernel's tracepoint as ground truth for the tracer. Root only (CI runs as root; the
/// reader mounts tracefs when it is absent).
@Suite(.serialized, .needsTimeWaitRoom, .enabled(if: Oracle.available, "needs root (or CAP_PERFMON) and the sock:inet_sock_set_state tracepoint"))
struct OracleTests {
    @Test(arguments: Oracle.Scenario.allCases)
    func unprivilegedTrace_agreesWithTheKernel(_ scenario: Oracle.Scenario) throws {
        let oracle = try KernelTracepoint(pagesPerCPU: Oracle.pagesPerCPU)
        defer { oracle.close() }
        let run = try Oracle.run(scenario, kernel: nil, oracle: oracle)
        try #require(run.lost == 0, "the oracle's rings dropped records: cannot judge")
        let sockets = Oracle.sockets(run)
        #expect(sockets.count == 3, "listener, server child, client")
        for socket in sockets {
            let label = "\(scenario) \(socket.side)#\(socket.conn)"
            try #require(!socket.kernel.isEmpty, "\(label): no kernel changes found for the socket")
            let logged = socket.stateEvents.compactMap(\.to)
            #expect(!socket.stateEvents.contains { $0.source == .tracepoint }, "\(label): kernel trace was off")
            // (1) Every state the kernel set appears in the log, observed or inferred.
            for state in socket.expectedStates {
                #expect(logged.contains(state), "\(label): kernel set \(state), log shows \(logged)")
            }
            for event in socket.stateEvents where event.source == .tcpInfo || event.source == .sockDiag {
                guard let to = event.to else { continue }
                // (2) No observation of a state the kernel never set (TIME_WAIT is the mini-socket).
                if to != .timeWait {
                    #expect(socket.kernelStates.contains(to), "\(label): \(event.source!) claims \(to), kernel set \(socket.kernelStates)")
                }
                // (3) No observation stamped before the kernel's transition.
                if let entered = socket.kernelEntry(to) {
                    #expect(event.timestampNs >= entered, "\(label): \(to) observed at \(event.timestampNs), kernel entered it at \(entered)")
                }
            }
        }
    }

    @Test(arguments: Oracle.Scenario.allCases)
    func kernelTrace_showsEveryTransitionFromTheTracepoint_once(_ scenario: Oracle.Scenario) throws {
        let oracle = try KernelTracepoint(pagesPerCPU: Oracle.pagesPerCPU)
        defer { oracle.close() }
        let collector = TraceCollector()
        let source = try TracepointSource(sink: collector, side: .client)
        defer { source.stop() }
        // A connection that is not ours, busy at the same time: it must never be printed.
        let stranger = try StrangerConnection()
        let run = try Oracle.run(scenario, kernel: source, oracle: oracle)
        try stranger.finish()
        try #require(run.lost == 0, "the oracle's rings dropped records: cannot judge")
        let sockets = Oracle.sockets(run)
        #expect(sockets.count == 3)
        var stamps = KernelStampCheck()
        defer { stamps.verify() }
        // On a busy host (other processes' connection churn) the tracer's own 64-page rings can
        // overflow: it must then say so, and what it still shows from the tracepoint must be
        // true; the rest comes from the fallback, which LostRecordsTests checks. Only a
        // warning-free run is held to "every transition, from the tracepoint, once".
        let warnings = collector.events.filter { $0.kind == .warning }
        if !warnings.isEmpty {
            #expect(warnings.allSatisfy { $0.cause.contains("ring buffers dropped") }, "only lost-record warnings: \(warnings)")
            for socket in sockets {
                let label = "\(scenario) \(socket.side)#\(socket.conn) (busy host, tracer lost records)"
                let logged = socket.stateEvents.compactMap(\.to)
                for state in socket.expectedStates {
                    #expect(logged.contains(state), "\(label): kernel set \(state), log shows \(logged)")
                }
                for event in socket.stateEvents where event.source == .tracepoint {
                    stamps.record(event, kernel: socket.kernelEntry(event.to!), label)
                }
            }
            print("\(scenario): the tracer's rings overflowed under other traffic (\(warnings.count) warnings): checked what it claimed, not completeness")
        }
        for socket in sockets where warnings.isEmpty {
            let label = "\(scenario) \(socket.side)#\(socket.conn)"
            let states = socket.stateEvents
            #expect(states.map(\.to!) == socket.expectedStates, "\(label): log \(states.map(\.to!)), kernel \(socket.expectedStates)")
            for event in states {
                if event.to == .timeWait {
                    #expect(event.source == .sockDiag, "\(label): TIME_WAIT comes from sock_diag")
                } else {
                    #expect(event.source == .tracepoint, "\(label): \(event.to!) from \(event.source!)")
                    stamps.record(event, kernel: socket.kernelEntry(event.to!), label)
                }
                #expect(!event.unexpected)
            }
            #expect(zip(states, states.dropFirst()).allSatisfy { $0.to != $1.to }, "\(label): duplicate events")
        }
        for event in run.events {
            #expect(event.local?.hasSuffix(":\(stranger.port)") != true && event.peer?.hasSuffix(":\(stranger.port)") != true,
                    "another connection leaked into the trace: \(event)")
        }
    }
}

/// An untraced loopback connection that changes state while the traced exchange runs.
struct StrangerConnection {
    let listener: Socket
    let client: Socket
    let port: UInt16

    init() throws {
        listener = try Socket.listening(on: SocketAddress(numericHost: "127.0.0.1", port: 0)!, backlog: 4, reusePort: false)
        port = try listener.localAddress().port
        client = try Socket(family: AF_INET, nonBlocking: false)
        _ = try client.connect(to: SocketAddress(numericHost: "127.0.0.1", port: port)!)
    }

    func finish() throws {
        try client.close()
        try listener.close()
    }
}

/// Whether the tracer's tracepoint events carry the kernel's own timestamps. Its perf event and
/// the oracle's each read the clock for one transition, back to back in the tracepoint's
/// handler: equal within a few µs — unless the vCPU is taken away in between (a busy host
/// measured 67 µs once, 2026-12-04). A tracer stamping its own later reading instead would be
/// tens of µs off on most transitions. So: most within 10 µs, none beyond 1 ms.
struct KernelStampCheck {
    private var offsets: [(ns: UInt64, text: String)] = []

    mutating func record(_ event: TraceEvent, kernel: UInt64?, _ label: String) {
        let kernelTs = kernel ?? 0
        let offset = max(kernelTs, event.timestampNs) - min(kernelTs, event.timestampNs)
        offsets.append((offset, "\(label): \(event.to?.name ?? "?") at \(event.timestampNs), kernel \(kernelTs)"))
    }

    func verify() {
        guard !offsets.isEmpty else { return }
        let close = offsets.filter { $0.ns < 10_000 }.count
        #expect(close * 10 >= offsets.count * 9, "fewer than 90% within 10 µs of the kernel's stamp: \(offsets.map(\.text))")
        for far in offsets where far.ns >= 1_000_000 { Issue.record("over 1 ms from the kernel's stamp: \(far.text)") }
    }
}
