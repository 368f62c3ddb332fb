import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Synchronization
import Testing

/// Out of descriptors, over the connection limit, idle connections by the hundred.
@Suite("Resource exhaustion", .serialized)
struct ExhaustionTests {
    static var hasPrlimit: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit") }

    @Test("under a 64-descriptor limit, accept() EMFILE neither spins nor kills the server; it resumes when descriptors free up",
          .enabled(if: hasPrlimit, "needs prlimit"))
    func acceptEMFILEBacksOff() throws {
        let server = try ServerProcess(wrapper: ["/usr/bin/prlimit", "--nofile=64:64"])
        defer { _ = server.stop() }
        // Far more connections than descriptors: the kernel completes them all into the backlog.
        // Baseline, this run, same server: one idle second. On a busy host the server's own idle
        // cost is not zero (as root its tracepoint reader routes every other process's
        // connection changes), so the limit is relative to what it burns without the pressure.
        let idleStart = ProcStats.cpuTicks(server.pid)
        usleep(1_000_000)
        let idle = ProcStats.cpuTicks(server.pid) - idleStart
        var peers: [TestPeer] = []
        for _ in 0..<150 { peers.append(try TestPeer(port: server.port, timeoutSeconds: 5)) }
        #expect(server.child.waitForStderr(timeout: 5) { $0.contains("EMFILE") }, "EMFILE is logged")
        // One second of pressure: a spinning loop would burn ~1 s of CPU here.
        let before = ProcStats.cpuTicks(server.pid)
        usleep(1_000_000)
        let burned = ProcStats.cpuTicks(server.pid) - before
        #expect(idleStart >= 0 && before >= 0 && burned >= 0 && idle >= 0, "CPU time measured")
        #expect(burned < idle + ProcStats.ticksPerSecond / 4,
                "server used \(burned) ticks of CPU in 1 s of EMFILE, \(idle) in 1 s idle")
        #expect(kill(server.pid, 0) == 0, "the server is alive")
        let held = ProcStats.socketCount(server.pid)
        #expect(held < 64)
        // Free the descriptors: every connection still waiting in the backlog must be served.
        for peer in peers.prefix(100) { peer.close() }
        for (index, peer) in peers.dropFirst(100).enumerated() {
            let message = Bytes.pattern(count: 1000, seed: UInt64(index))
            try peer.send(message)
            #expect(try peer.receive(exactly: message.count) == message, "connection \(index + 100) after the pressure")
            peer.close()
        }
        #expect(try TestPeer.echoRoundTrip(port: server.port))
        let emfile = server.child.events.filter { $0.kind == .error && $0.errno == EMFILE }
        #expect(!emfile.isEmpty)
        print("EMFILE: held \(held) sockets at the limit, \(burned) CPU ticks in 1 s of pressure (\(idle) idle), \(emfile.count) EMFILE events (one per 100 ms pause)")
        #expect(server.stop() == 0)
        #expect(!hasCrashMarker(server.child.stderrText))
    }

    @Test("a connection storm over --max-connections: never more than the limit open, the rest closed and counted")
    func connectionLimitHolds() throws {
        let server = try ServerProcess(["--max-connections", "10"])
        let held = try (0..<10).map { _ in try TestPeer(port: server.port) }
        // Make sure the ten are registered before the storm.
        for (index, peer) in held.enumerated() {
            try peer.send([UInt8(index)])
            #expect(try peer.receive(exactly: 1) == [UInt8(index)])
        }
        let closedByServer = Atomic<Int>(0)
        let peak = Atomic<Int>(0)
        concurrently(50) { _ in
            guard let peer = try? TestPeer(port: server.port, timeoutSeconds: 5) else { return }
            let open = ProcStats.socketCount(server.pid)
            if open > peak.load(ordering: .relaxed) { peak.store(open, ordering: .relaxed) }
            let end = peer.receiveToEnd()
            if end.bytes.isEmpty { closedByServer.add(1, ordering: .relaxed) }
        }
        #expect(closedByServer.load(ordering: .relaxed) == 50)
        #expect(peak.load(ordering: .relaxed) <= 11 + 1, "listener + 10 connections (+1 being closed)")
        for (index, peer) in held.enumerated() {
            let message = Bytes.pattern(count: 5000, seed: UInt64(index))
            try peer.send(message)
            #expect(try peer.receive(exactly: message.count) == message)
            peer.close()
        }
        // The server has closed the ten (only the listener left) before it is stopped.
        #expect(waitForSockets(server.pid, atMost: 1, timeout: 10) <= 1, "\(socketsOn(port: server.port))")
        #expect(server.stop() == 0)
        #expect(server.child.stderrText.contains("50 refused over the connection limit"), "\(server.child.stderrText.suffix(300))")
        #expect(server.child.events.filter { $0.kind == .warning && $0.cause.contains("connection limit") }.count == 50)
    }

    @Test("an idle storm under --idle-timeout: every idle connection is closed, busy ones are not")
    func idleTimeoutUnderStorm() throws {
        let traceFile = FileManager.default.temporaryDirectory.appendingPathComponent("idle-\(getpid()).jsonl").path
        defer { unlink(traceFile) }
        let server = try ServerProcess(["--idle-timeout", "1"], traceFile: traceFile)
        let base = ProcStats.socketCount(server.pid)
        let client = WellBehavedClient(port: server.port)
        let idle = try (0..<200).map { _ in try TestPeer(port: server.port, timeoutSeconds: 5) }
        let closed = Atomic<Int>(0)
        concurrently(8) { part in
            for peer in idle[(part * 25)..<((part + 1) * 25)] {
                let end = peer.receiveToEnd()
                if end.bytes.isEmpty && end.errno == nil { closed.add(1, ordering: .relaxed) }
                peer.close()
            }
        }
        #expect(closed.load(ordering: .relaxed) == 200, "every idle connection got the server's FIN within the timeout")
        let result = client.finish()
        #expect(result.failures.isEmpty, "\(result.failures.prefix(3))")
        #expect(waitForSockets(server.pid, atMost: base) <= base)
        #expect(server.stop() == 0)
        #expect(server.child.stderrText.contains("200 closed idle"), "\(server.child.stderrText.suffix(300))")
    }
}
