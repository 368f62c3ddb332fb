import Glibc
import Synchronization
import TestSupport
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// Runs in-process echo exchanges (server + client, like EchoDemo) and reads the kernel's own
/// record of them from an independent tracepoint reader: the oracle for the tracer.
enum Oracle {
    static let available = geteuid() == 0 && KernelTracepoint.availability() == .available
    /// 8 MiB per CPU, ~80,000 changes: a busy host's churn (~80,000 changes/s) must not fill
    /// the oracle's rings between two drains of its drainer thread.
    static let pagesPerCPU = 2048

    enum Scenario: String, CaseIterable {
        /// Client close()s right after its echo: it is the active closer.
        case clientClose
        /// The server closes first (idle timeout): the client ends in CLOSE_WAIT → LAST_ACK.
        case serverClose
        /// Client shutdown(SHUT_WR) before the last echo, keeps receiving, then closes.
        case halfClose
    }

    struct Run {
        var events: [TraceEvent]
        var kernel: [KernelStateChange]
        var lost: UInt64
    }

    /// One exchange. `kernel`: the tracer's tracepoint source (nil: unprivileged path).
    static func run(_ scenario: Scenario, kernel: TracepointSource?, oracle: KernelTracepoint) throws -> Run {
        let traces = TraceCollector()
        let pair = try InProcessEcho(sink: traces, kernel: kernel, timeoutSeconds: 5) { config in
            if scenario == .serverClose { config.idleTimeoutSeconds = 0.05 }
        }
        let client = pair.client
        // Drained all along by a thread of its own and decoded by the oracle's own decoder: on
        // a busy host other processes' changes would otherwise fill the rings during the run.
        // Only our server's port: every socket of the run has it on one end.
        let decoder = try OracleDecoder()
        let collector = OracleCollector()
        let serverPort = pair.server.boundAddress?.port ?? 0
        let drainer = try ThreadHandle {
            while !collector.stop.load(ordering: .acquiring) {
                let batch = decoder.drain(oracle, port: serverPort)
                collector.changes.locked { $0 += batch }
                usleep(1_000)
            }
        }
        do {
            defer { pair.stopServer() }
            try client.connect()
            switch scenario {
            case .clientClose:
                try sendAndEcho(client, "ping")
                client.close()
            case .serverClose:
                try sendAndEcho(client, "ping")
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)
                defer { buffer.deallocate() }
                while try client.receiveSome(into: buffer) > 0 {}
                client.close()
            case .halfClose:
                _ = try client.exchange(messages: ["hello", "after our FIN"], lastAfterHalfClose: true) { _ in }
            }
            pair.settle()
        }
        // Until the listener's trailing LISTEN→CLOSE has reached the rings (bounded).
        let listenerClosed = { collector.changes.locked { changes in
            changes.contains { $0.sourcePort == serverPort && $0.destinationPort == 0 && $0.newState == 7 } } }
        let deadline = MonotonicClock.now() + 2_000_000_000
        while !listenerClosed() && MonotonicClock.now() < deadline { usleep(1_000) }
        collector.stop.store(true, ordering: .releasing)
        if !drainer.join(timeoutSeconds: 10) { throw HarnessError("the oracle's drainer thread hung") }
        let rest = decoder.drain(oracle, port: serverPort)
        let kernelChanges = collector.changes.locked { $0 + rest }.sorted { $0.timestampNs < $1.timestampNs }
        pair.finishFollowing()
        return Run(events: traces.events, kernel: kernelChanges, lost: oracle.lostRecords)
    }

    private static func sendAndEcho(_ client: EchoClient, _ text: String) throws {
        let line = Array((text + "\n").utf8)
        try line.withUnsafeBytes { try client.sendAll($0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)
        defer { buffer.deallocate() }
        var received = 0
        while received < line.count {
            let n = try client.receiveSome(into: buffer)
            if n == 0 { break }
            received += n
        }
    }

    /// One traced socket: its events and, independently, the kernel's changes on it.
    struct SocketView {
        var side: TraceSide
        var conn: Int
        var events: [TraceEvent]
        var kernel: [KernelStateChange]

        var stateEvents: [TraceEvent] { events.filter { $0.kind == .state } }

        /// The states the log must show: every state the kernel set, except that an active
        /// closer's full socket goes X→CLOSE while the connection lives on as TIME_WAIT.
        var expectedStates: [TCPState] {
            var states: [TCPState] = []
            // close() after shutdown() re-sets FIN_WAIT1: the tracepoint fires with old == new.
            for change in kernel where change.oldState != change.newState {
                let to = TCPState(kernel: change.newState)
                if to == .closed, [4, 5, 11].contains(change.oldState), !endedByReset {
                    states.append(.timeWait)
                } else {
                    states.append(to)
                }
            }
            return states
        }

        var endedByReset: Bool { events.contains { $0.errno == ECONNRESET || $0.errno == ECONNREFUSED } }

        /// When the kernel first entered `state` on this socket (TIME_WAIT: the full socket's CLOSE).
        func kernelEntry(_ state: TCPState) -> UInt64? {
            if state == .timeWait {
                return kernel.first { $0.newState == 7 && [4, 5, 11].contains($0.oldState) }?.timestampNs
            }
            return kernel.first { TCPState(kernel: $0.newState) == state }?.timestampNs
        }

        var kernelStates: Set<TCPState> { Set(kernel.map { TCPState(kernel: $0.newState) }) }
    }

    /// Splits a run into sockets and finds each socket's kernel changes by its 4-tuple, then its
    /// skaddr (a client's CLOSE→SYN_SENT shows source port 0: same skaddr, before the first match).
    static func sockets(_ run: Run) -> [SocketView] {
        var keys: [String: (TraceSide, Int)] = [:]
        for event in run.events { keys["\(event.side.rawValue)#\(event.conn)"] = (event.side, event.conn) }
        return keys.values.sorted { ($0.0.rawValue, $0.1) < ($1.0.rawValue, $1.1) }.compactMap { side, conn in
            let events = run.events.filter { $0.side == side && $0.conn == conn }
            guard let localText = events.last(where: { $0.local != nil })?.local,
                  let local = SocketAddress(parsing: localText) else { return nil }
            let peer = events.last(where: { $0.peer != nil })?.peer.flatMap { SocketAddress(parsing: $0) }
            return SocketView(side: side, conn: conn, events: events, kernel: chain(local: local, peer: peer, in: run.kernel))
        }
    }

    static func chain(local: SocketAddress, peer: SocketAddress?, in changes: [KernelStateChange]) -> [KernelStateChange] {
        let host = { (text: String) in text.hasPrefix("::ffff:") ? String(text.dropFirst(7)) : text }
        guard let first = changes.first(where: { change in
            change.sourcePort == local.port && host(change.sourceAddress) == host(local.host)
                && change.destinationPort == (peer?.port ?? 0)
                && (peer == nil ? change.newState == 10 : host(change.destinationAddress) == host(peer!.host))
        }) else { return [] }
        let same = changes.filter { $0.skaddr == first.skaddr }
        guard let anchor = same.firstIndex(of: first) else { return [] }
        var start = anchor
        while start > 0, same[start - 1].newState != 7, same[start - 1].sourcePort == 0 || same[start - 1].sourcePort == local.port {
            start -= 1
        }
        var end = anchor
        while end < same.count - 1, same[end].newState != 7 { end += 1 }
        return Array(same[start...end])
    }
}

/// What the oracle's drainer thread collects, and its stop flag.
final class OracleCollector: Sendable {
    let changes = Mutex<[KernelStateChange]>([])
    let stop = Atomic<Bool>(false)
}
