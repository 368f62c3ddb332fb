import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Synchronization
import Testing

/// A well-behaved client echoing in a loop on its own thread while a test misbehaves: every
/// byte it sends must come back, whatever the hostile peer does.
final class WellBehavedClient: @unchecked Sendable {
    let port: UInt16
    private let stopFlag = Atomic<Bool>(false)
    let rounds = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
    private let done = DispatchSemaphore(value: 0)

    init(port: UInt16) {
        self.port = port
        Thread.detachNewThread { [self] in
            var seed: UInt64 = 1
            while !stopFlag.load(ordering: .relaxed) {
                seed += 1
                // 30 s per wait: a server starved on a loaded host (1/30 of a CPU at load 30)
                // falls seconds behind a 1200-connection flood; its echo is late, not lost,
                // and only a lost or wrong byte fails. Lateness is printed.
                let started = Date()
                if let problem = TestPeer.echoRoundTripProblem(port: port, size: 1 + Int(seed * 7919 % 32768), seed: seed,
                                                               timeoutSeconds: 30) {
                    failures.locked { $0.append("round \(seed): \(problem)") }
                } else {
                    rounds.add(1, ordering: .relaxed)
                    let took = Date().timeIntervalSince(started)
                    if took > 5 { print("well-behaved client: round \(seed) took \(Int(took)) s (a starved server, every byte back)") }
                }
                usleep(2_000)
            }
            done.signal()
        }
    }

    /// Stops the loop and returns (rounds, failures).
    func finish() -> (rounds: Int, failures: [String]) {
        stopFlag.store(true, ordering: .relaxed)
        _ = done.wait(timeout: .now() + 65)
        return (rounds.load(ordering: .relaxed), failures.locked { $0 })
    }
}

/// Samples a process's VmRSS until stopped; keeps the peak.
final class RSSSampler: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    let peakKiB = Atomic<Int>(0)
    private let done = DispatchSemaphore(value: 0)

    init(pid: Int32) {
        Thread.detachNewThread { [self] in
            while !stopFlag.load(ordering: .relaxed) {
                let rss = ProcStats.rssKiB(pid)
                if rss > peakKiB.load(ordering: .relaxed) { peakKiB.store(rss, ordering: .relaxed) }
                usleep(20_000)
            }
            done.signal()
        }
    }

    func finish() -> Int {
        stopFlag.store(true, ordering: .relaxed)
        _ = done.wait(timeout: .now() + 5)
        return peakKiB.load(ordering: .relaxed)
    }
}

/// Server-side sockets on `port` in CLOSE_WAIT (the server forgot to close()).
func serverCloseWaitCount(port: UInt16) -> Int {
    guard let diag = try? SockDiag(), let entries = try? diag.dump(family: AF_INET, states: [8]) else { return -1 }
    return entries.filter { $0.local.port == port }.count
}

/// Bytes waiting unread in the receive queue of the server's socket for one connection
/// (sock_diag's Recv-Q, as `ss` shows it); -1 when there is no such socket.
func serverReceiveQueue(port: UInt16, peer: UInt16) -> Int {
    guard let diag = try? SockDiag(), let entries = try? diag.dump(family: AF_INET, states: [1, 8]) else { return -1 }
    return entries.first { $0.local.port == port && $0.peer.port == peer }.map { Int($0.receiveQueue) } ?? -1
}

/// Backpressure seen from outside: bytes from `peer` sit unread in the server's receive queue
/// and the server takes none of them over 100 ms (a server still reading empties it in far
/// less; the receive buffer's size, which autotuning changes, does not matter).
func serverStoppedReading(port: UInt16, peer: UInt16) -> Bool {
    let first = serverReceiveQueue(port: port, peer: peer)
    guard first >= 16 * 1024 else { return false }
    usleep(100_000)
    return serverReceiveQueue(port: port, peer: peer) >= first
}

/// Every socket on `port` as "STATE local peer" (diagnostics for a failed expectation).
func socketsOn(port: UInt16) -> [String] {
    guard let diag = try? SockDiag(), let entries = try? diag.dump(family: AF_INET) else { return [] }
    return entries.filter { $0.local.port == port || $0.peer.port == port }.map { "\($0.state.name) \($0.local) \($0.peer) q=\($0.receiveQueue)/\($0.sendQueue)" }
}

/// Waits (bounded) until the server's open sockets are back to `count`.
func waitForSockets(_ pid: Int32, atMost count: Int, timeout: Double = 5) -> Int {
    let deadline = Date().addingTimeInterval(timeout)
    var now = ProcStats.socketCount(pid)
    while now > count && Date() < deadline {
        usleep(20_000)
        now = ProcStats.socketCount(pid)
    }
    return now
}

/// Bound on the server's memory growth during any one hostile case: the per-connection echo
/// queue is 256 KiB, so even 64 misbehaving peers stay far below it.
/// Under AddressSanitizer (run with ASAN_OPTIONS set, see docs/RELIABILITY.md) freed memory
/// sits in ASan's quarantine (256 MiB by default) and RSS means little: the bound is loosened.
let underAddressSanitizer = ProcessInfo.processInfo.environment["ASAN_OPTIONS"] != nil
let rssGrowthLimitKiB = (underAddressSanitizer ? 320 : 48) * 1024

@Suite("Hostile and broken peers against EchoServer", .serialized)
struct HostilePeerTests {
    /// Starts a server, warms it up, and returns it with its baseline RSS and fd count.
    static func server(_ extra: [String] = [], traceFile: String? = nil) throws -> (ServerProcess, rss: Int, fds: Int) {
        let server = try ServerProcess(extra, traceFile: traceFile)
        #expect(try TestPeer.echoRoundTrip(port: server.port))
        // The warm-up connection is closed on the server's side too: the listener only.
        #expect(waitForSockets(server.pid, atMost: 1, timeout: 10) <= 1, "\(socketsOn(port: server.port))")
        return (server, ProcStats.rssKiB(server.pid), ProcStats.socketCount(server.pid))
    }

    static func finish(_ server: ServerProcess, baseFDs: Int, client: WellBehavedClient,
                       rss: RSSSampler, baseRSS: Int, _ what: String) {
        let result = client.finish()
        let peak = rss.finish()
        #expect(result.failures.isEmpty, "\(what): well-behaved client lost bytes: \(result.failures.prefix(3))")
        #expect(result.rounds > 0, "\(what): the well-behaved client was not served")
        #expect(peak - baseRSS < rssGrowthLimitKiB, "\(what): RSS grew from \(baseRSS) to \(peak) KiB")
        #expect(waitForSockets(server.pid, atMost: baseFDs) <= baseFDs,
                "\(what): sockets leaked: \(socketsOn(port: server.port))")
        // Waited for, bounded: a connection the peer closed while it sat in the accept queue is
        // in CLOSE_WAIT without being the server's fd yet, so the fd count above is back to its
        // baseline before the server has accepted and closed it (busy host: 3 such, once). One
        // the server keeps open stays in CLOSE_WAIT, and fails here after 5 s.
        #expect(waitFor(timeout: 5) { serverCloseWaitCount(port: server.port) == 0 },
                "\(what): server socket left in CLOSE_WAIT: \(socketsOn(port: server.port))")
        #expect(server.stop() == 0)
        #expect(!hasCrashMarker(server.child.stderrText))
        print("\(what): \(result.rounds) clean rounds meanwhile, RSS \(baseRSS) → peak \(peak) KiB")
    }

    @Test("a peer that resets mid-stream (SO_LINGER 0) is traced with ECONNRESET; everyone else is served")
    func resetMidStream() throws {
        let (server, baseRSS, baseFDs) = try Self.server()
        let client = WellBehavedClient(port: server.port)
        let rss = RSSSampler(pid: server.pid)
        var resetPorts: Set<Int> = []
        for round in 0..<10 {
            let peer = try TestPeer(port: server.port, timeoutSeconds: 2, receiveBuffer: 4096)
            resetPorts.insert(Int(peer.localPort))
            // Enough that the echo backs up (we never read), then an abortive close.
            try? peer.send(Bytes.pattern(count: 512 * 1024, seed: UInt64(round)))
            peer.abort()
        }
        // Until the server has traced every reset (bounded), not a fixed sleep.
        func resets() -> [TraceEvent] {
            server.child.events.filter { $0.kind == .error && $0.side == .server && ($0.errno == ECONNRESET || $0.errno == EPIPE) }
        }
        _ = waitFor(timeout: 5) { resets().count >= 10 }
        Self.finish(server, baseFDs: baseFDs, client: client, rss: rss, baseRSS: baseRSS, "reset mid-stream")
        let errors = server.child.events.filter { $0.kind == .error && $0.side == .server }
        #expect(resets().count >= 10, "each reset is in the trace with its errno: \(errors.map(\.cause))")
    }

    @Test("peers that connect and never send cost nothing and block no one")
    func silentPeers() throws {
        let (server, baseRSS, baseFDs) = try Self.server()
        let client = WellBehavedClient(port: server.port)
        let rss = RSSSampler(pid: server.pid)
        let silent = try (0..<50).map { _ in try TestPeer(port: server.port) }
        // Until the server has accepted all fifty (bounded), not a fixed sleep.
        #expect(waitFor(timeout: 5) { ProcStats.socketCount(server.pid) >= baseFDs + 50 }, "the server holds the silent connections")
        for peer in silent { peer.close() }
        Self.finish(server, baseFDs: baseFDs, client: client, rss: rss, baseRSS: baseRSS, "silent peers")
        let accepted = server.child.events.filter { $0.kind == .state && $0.side == .server && $0.to == .established }
        #expect(accepted.count >= 50)
    }

    @Test("slowloris readers (send, never read) hit backpressure: the server stops reading, memory stays bounded")
    func slowlorisReaders() throws {
        let (server, baseRSS, baseFDs) = try Self.server()
        let client = WellBehavedClient(port: server.port)
        let rss = RSSSampler(pid: server.pid)
        let accepted = Mutex<[Int]>([])
        let peers = Mutex<[TestPeer]>([])
        concurrently(8) { index in
            guard let peer = try? TestPeer(port: server.port, timeoutSeconds: 1.5, receiveBuffer: 4096) else { return }
            let chunk = Bytes.pattern(count: 64 * 1024, seed: UInt64(index))
            var sent = 0
            // Send until the socket blocks for 1.5 s: the server has stopped reading from us.
            while sent < 64 << 20, (try? peer.send(chunk)) != nil { sent += chunk.count }
            accepted.locked { $0.append(sent) }
            peers.locked { $0.append(peer) }
        }
        let sentCounts = accepted.locked { $0 }
        #expect(sentCounts.count == 8)
        for sent in sentCounts {
            // Kernel buffers both ways plus the server's 256 KiB queue: megabytes, not 64 MiB.
            #expect(sent < 32 << 20, "a non-reading peer pushed \(sent) bytes: no backpressure")
        }
        for peer in peers.locked({ $0 }) { peer.close() }
        Self.finish(server, baseFDs: baseFDs, client: client, rss: rss, baseRSS: baseRSS, "slowloris readers")
        // Closing with unread echo in our receive queue resets the connection: traced with its errno.
        let resets = server.child.events.filter { $0.kind == .error && ($0.errno == ECONNRESET || $0.errno == EPIPE) }
        #expect(resets.count >= 8, "\(resets.count) resets traced")
    }

    @Test("a peer that half-closes and vanishes before reading its echo leaves nothing behind")
    func halfCloseAndVanish() throws {
        let (server, baseRSS, baseFDs) = try Self.server()
        let client = WellBehavedClient(port: server.port)
        let rss = RSSSampler(pid: server.pid)
        for round in 0..<10 {
            let peer = try TestPeer(port: server.port, timeoutSeconds: round < 5 ? 2 : 0.3, receiveBuffer: 4096)
            if round < 5 {
                // 256 KiB: the server reads it all and the FIN (CLOSE_WAIT); whether the reset
                // finds it still sending depends on how much its send buffer took meanwhile.
                try? peer.send(Bytes.pattern(count: 256 * 1024, seed: UInt64(round)))
            } else {
                // Until the server stops reading (its echo queue full, the echo unread here): the
                // reset then always finds echo waiting to be sent, and is traced. (With 256 KiB
                // only, a server fast enough to hand all of it to its send buffer before the
                // reset closed cleanly in all ten rounds once, in a CI run.)
                let chunk = Bytes.pattern(count: 64 * 1024, seed: UInt64(round))
                var sent = 0
                while sent < 64 << 20, (try? peer.send(chunk)) != nil { sent += chunk.count }
            }
            peer.shutdownWrite()
            peer.close()
        }
        Self.finish(server, baseFDs: baseFDs, client: client, rss: rss, baseRSS: baseRSS, "half-close and vanish")
        let events = server.child.events
        #expect(events.contains { $0.kind == .error && ($0.errno == ECONNRESET || $0.errno == EPIPE) })
        #expect(events.states(side: .server).filter { $0 == .closeWait }.count >= 1, "the peer's FIN was seen")
    }

    @Test("a connect/close flood (half of them abortive) is survived; the server returns to its baseline")
    func connectCloseFlood() throws {
        let traceFile = FileManager.default.temporaryDirectory.appendingPathComponent("flood-\(getpid()).jsonl").path
        defer { unlink(traceFile) }
        let (server, baseRSS, baseFDs) = try Self.server(traceFile: traceFile)
        let client = WellBehavedClient(port: server.port)
        let rss = RSSSampler(pid: server.pid)
        let connected = Atomic<Int>(0)
        concurrently(8) { index in
            for round in 0..<150 {
                guard let peer = try? TestPeer(port: server.port, timeoutSeconds: 5) else { continue }
                connected.add(1, ordering: .relaxed)
                if (index + round) % 2 == 0 { peer.abort() } else { peer.close() }
            }
        }
        #expect(connected.load(ordering: .relaxed) == 1200)
        Self.finish(server, baseFDs: baseFDs, client: client, rss: rss, baseRSS: baseRSS, "connect/close flood")
        let events = (try? TraceEvent.read(jsonLinesAt: traceFile)) ?? []
        let resets = events.filter { $0.kind == .error && $0.errno == ECONNRESET }
        #expect(!resets.isEmpty, "abortive closes show up as ECONNRESET")
        let summary = server.child.stderrText
        #expect(summary.contains("stopped:"), "\(summary)")
    }

    @Test("binary garbage (NULs, ANSI escapes, invalid UTF-8) is echoed byte for byte and escaped in the text trace")
    func binaryGarbage() throws {
        let server = try ServerProcess(["--trace", "text", "--trace-verbose", "--no-color"])
        // The escapes first: the verbose trace shows only the start of each chunk.
        var garbage: [UInt8] = Array("\u{1b}[2J\u{1b}[31mowned\u{1b}]0;title\u{07}".utf8) + Array(0...255)
        garbage += [0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x00, 0x9b, 0x5b, 0x32, 0x4a]
        garbage += Bytes.pattern(count: 60_000, seed: 99)
        let peer = try TestPeer(port: server.port)
        try peer.send(garbage)
        let echo = try peer.receive(exactly: garbage.count)
        peer.shutdownWrite()
        #expect(peer.receiveToEnd().bytes.isEmpty)
        #expect(echo == garbage, "echoed byte for byte")
        #expect(server.stop() == 0)
        let stderr = [UInt8](server.child.stderr)
        #expect(!stderr.contains(0x1b), "no ESC byte reaches the terminal")
        #expect(!stderr.contains(0x00) && !stderr.contains(0x07) && !stderr.contains(0x9b))
        #expect(String(validating: stderr, as: UTF8.self) != nil, "the trace is valid UTF-8")
        #expect(server.child.stderrText.contains("\\x1b[2J"), "the escape is shown escaped")
    }

    /// Bytes streamed in the big one-direction test: 1 GiB (~1.5 s in a debug build here);
    /// SOCKETKIT_STREAM_MIB=N for less (e.g. under sanitizers).
    static var streamMiB: Int { Int(ProcessInfo.processInfo.environment["SOCKETKIT_STREAM_MIB"] ?? "") ?? 1024 }

    @Test("a large stream whose echo is not read for a while: memory stays bounded, every byte comes back")
    func largeStream() throws {
        let (server, baseRSS, baseFDs) = try Self.server()
        let client = WellBehavedClient(port: server.port)
        let rss = RSSSampler(pid: server.pid)
        let total = Self.streamMiB << 20
        let block = Bytes.pattern(count: 1 << 20, seed: 7)
        let peer = try TestPeer(port: server.port, timeoutSeconds: 30)
        let sendError = Mutex<String?>(nil)
        let sender = DispatchGroup()
        DispatchQueue.global().async(group: sender) {
            do {
                for _ in 0..<(total >> 20) { try peer.send(block) }
                peer.shutdownWrite()
            } catch {
                sendError.locked { $0 = "\(error)" }
            }
        }
        // Do not read: the server must stop reading from us (backpressure), not buffer. Seen by
        // sock_diag: our bytes pile up in the server's receive queue, unread.
        #expect(waitFor(timeout: 20) { serverStoppedReading(port: server.port, peer: peer.localPort) },
                "backpressure: the server stopped reading (\(socketsOn(port: server.port)))")
        let pausedPeak = ProcStats.rssKiB(server.pid)
        var received = 0
        var mismatch = false
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let started = Date()
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(peer.fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            block.withUnsafeBytes { expected in
                buffer.withUnsafeBytes { got in
                    var offset = 0
                    while offset < n {
                        let at = (received + offset) & ((1 << 20) - 1)
                        let run = min(n - offset, (1 << 20) - at)
                        if memcmp(got.baseAddress! + offset, expected.baseAddress! + at, run) != 0 { mismatch = true }
                        offset += run
                    }
                }
            }
            received += n
        }
        let seconds = Date().timeIntervalSince(started)
        #expect(sender.wait(timeout: .now() + 60) == .success, "HUNG: the sender did not finish within 60 s of the echo")
        peer.close()
        #expect(sendError.locked { $0 } == nil)
        #expect(received == total, "received \(received) of \(total)")
        #expect(!mismatch, "the echo differs")
        #expect(pausedPeak - baseRSS < rssGrowthLimitKiB)
        print("large stream: \(Self.streamMiB) MiB echoed in \(String(format: "%.1f", seconds)) s after a 2 s pause; RSS while paused \(pausedPeak) KiB")
        Self.finish(server, baseFDs: baseFDs, client: client, rss: rss, baseRSS: baseRSS, "large stream \(Self.streamMiB) MiB")
    }
}
