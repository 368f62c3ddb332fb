import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Synchronization
import Testing

/// A bounded mixed workload (churn + streams + resets + idle) with the server's descriptors,
/// memory and threads sampled before and after. ~8 s by default; SOCKETKIT_SOAK=1 runs 60 s
/// (SOCKETKIT_SOAK=N: N seconds).
@Suite("Soak")
struct SoakTests {
    static var seconds: Double {
        guard let value = ProcessInfo.processInfo.environment["SOCKETKIT_SOAK"], let n = Double(value) else { return 8 }
        return n == 1 ? 60 : n
    }

    struct Sample: CustomStringConvertible {
        var fds, sockets, rssKiB, threads: Int
        var targets: [String]
        init(_ pid: Int32) {
            targets = ProcStats.fdTargets(pid)
            fds = ProcStats.fdCount(pid)
            sockets = ProcStats.socketCount(pid)
            rssKiB = ProcStats.rssKiB(pid)
            threads = ProcStats.threads(pid)
        }
        var description: String { "fds \(fds), TCP sockets \(sockets), RSS \(rssKiB) KiB, threads \(threads)" }
    }

    /// Six roles on their own threads until `seconds` pass: 2 churn, 1 stream, 1 reset,
    /// 1 idle, 1 half-close-and-vanish. Returns what was done and what went wrong.
    static func workload(port: UInt16, seconds: Double) -> (counts: [String: Int], failures: [String]) {
        let deadline = Date().addingTimeInterval(seconds)
        let failures = Mutex<[String]>([])
        let counts = Mutex<[String: Int]>([:])
        @Sendable func count(_ key: String, _ n: Int = 1) { counts.locked { $0[key, default: 0] += n } }
        @Sendable func fail(_ text: String) { failures.locked { if $0.count < 20 { $0.append(text) } } }
        concurrently(6) { role in
            var seed = UInt64(role) << 32
            while Date() < deadline {
                seed += 1
                do {
                    switch role {
                    case 0, 1:   // churn: connect, echo, half-close, close
                        if try TestPeer.echoRoundTrip(port: port, size: 1 + Int(seed % 20_000), seed: seed) {
                            count("churn")
                        } else { fail("churn \(seed): echo differs") }
                    case 2:      // streams: 4 MiB through one connection, verified
                        let peer = try TestPeer(port: port)
                        let block = Bytes.pattern(count: 256 * 1024, seed: seed)
                        let ok = Atomic<Bool>(true)
                        concurrently(2) { side in
                            if side == 0 {
                                for _ in 0..<16 where (try? peer.send(block)) == nil { ok.store(false, ordering: .relaxed) }
                            } else {
                                for _ in 0..<16 where (try? peer.receive(exactly: block.count)) != block { ok.store(false, ordering: .relaxed) }
                            }
                        }
                        peer.shutdownWrite()
                        let end = peer.receiveToEnd()
                        if ok.load(ordering: .relaxed) && end.bytes.isEmpty && end.errno == nil { count("stream MiB", 4) } else { fail("stream \(seed) differs") }
                    case 3:      // resets mid-stream
                        let peer = try TestPeer(port: port, receiveBuffer: 4096)
                        try? peer.send(Bytes.pattern(count: 64 * 1024, seed: seed))
                        peer.abort()
                        count("reset")
                        usleep(5_000)
                    case 4:      // idle: hold 20 silent connections for a second, then close
                        let idle = try (0..<20).map { _ in try TestPeer(port: port) }
                        usleep(1_000_000)
                        for peer in idle { peer.close() }
                        count("idle", 20)
                    default:     // half-close and vanish
                        let peer = try TestPeer(port: port, receiveBuffer: 4096)
                        try? peer.send(Bytes.pattern(count: 128 * 1024, seed: seed))
                        peer.shutdownWrite()
                        peer.close()
                        count("vanish")
                        usleep(5_000)
                    }
                } catch {
                    fail("role \(role): \(error)")
                }
            }
        }
        return (counts.locked { $0 }, failures.locked { $0 })
    }

    @Test("a mixed workload leaks no descriptor, memory, thread or CLOSE_WAIT socket")
    func soak() throws {
        let traceFile = FileManager.default.temporaryDirectory.appendingPathComponent("soak-\(getpid()).jsonl").path
        defer { unlink(traceFile) }
        let server = try ServerProcess(["--threads", "2", "--idle-timeout", "5"], traceFile: traceFile)
        // Warm up with the same workload for 2 s: Dispatch (the trace follower's queue, its
        // timers) and the follower's netlink socket are created lazily, once; "before" is the
        // steady state after that, so any growth from here on is a leak.
        let warmUp = Self.workload(port: server.port, seconds: 2)
        #expect(warmUp.failures.isEmpty, "\(warmUp.failures)")
        _ = waitForSockets(server.pid, atMost: 2)   // the two listeners
        usleep(1_000_000)
        let before = Sample(server.pid)
        let run = Self.workload(port: server.port, seconds: Self.seconds)
        let failures = Mutex<[String]>(run.failures)
        let counts = Mutex<[String: Int]>(run.counts)
        // Let the server finish closing what the workload left (resets, vanished peers).
        _ = waitForSockets(server.pid, atMost: before.sockets)
        usleep(1_000_000)
        let after = Sample(server.pid)
        let closeWait = serverCloseWaitCount(port: server.port)
        let summary = "soak \(Int(Self.seconds)) s: \(counts.locked { $0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))\n  before: \(before)\n  after:  \(after)\n  server CLOSE_WAIT sockets: \(closeWait)"
        print(summary)
        #expect(failures.locked { $0 }.isEmpty, "\(failures.locked { $0 })")
        #expect(after.sockets == before.sockets, "TCP sockets: \(before.sockets) → \(after.sockets)")
        // The trace follower creates its netlink socket and Dispatch its timerfd lazily, once,
        // the first time a closed socket needs following on a timer (which a short warm-up may
        // not hit). Those two may appear; any other new descriptor is a leak. TCP sockets are
        // compared exactly above.
        let extras = after.targets.map { $0.split(separator: "→").last.map(String.init) ?? "" }
            .filter { target in !before.targets.contains { $0.hasSuffix("→" + target) } }
        let unexplained = extras.filter { $0 != "anon_inode:[timerfd]" && !$0.hasPrefix("socket:") }
        #expect(unexplained.isEmpty && extras.count <= 2, "descriptors: \(before.targets) → \(after.targets)")
        // Dispatch's pool grows and shrinks on its own (±1-2 workers); a per-connection leak would be thousands.
        #expect(after.threads <= before.threads + 2, "threads: \(before.threads) → \(after.threads)")
        #expect(after.rssKiB - before.rssKiB < (underAddressSanitizer ? 320 : 16) * 1024, "RSS: \(before.rssKiB) → \(after.rssKiB) KiB")
        #expect(closeWait == 0)
        #expect(server.stop() == 0)
        #expect(!hasCrashMarker(server.child.stderrText))
        print("  " + (server.child.stderrText.split(separator: "\n").last.map(String.init) ?? ""))
    }
}
