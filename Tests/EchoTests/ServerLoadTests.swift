import Foundation
import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit
import TestSupport

/// Correctness under concurrency (not speed): the built EchoServer under many clients, a
/// client that never reads, half-close under backpressure, the connection limit, idle timeout.
@Suite(.serialized) struct ServerLoadTests {
    static func residentKiB(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    static func load(port: UInt16, mode: LoadConfiguration.Mode, connections: Int, size: Int, seconds: Double) throws -> LoadReport {
        var config = LoadConfiguration()
        config.port = port
        config.mode = mode
        config.connections = connections
        config.size = size
        config.durationSeconds = seconds
        config.threads = 2
        return try LoadGenerator(configuration: config).run()
    }

    /// A blocking client connected to the server.
    static func client(_ port: UInt16) throws -> Socket {
        let socket = try Socket(family: AF_INET, nonBlocking: false)
        try socket.connect(to: SocketAddress(numericHost: "127.0.0.1", port: port)!)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(socket.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return socket
    }

    /// Reads until EOF (or an error / 5 s without data); returns the bytes and whether EOF came.
    static func readToEOF(_ socket: Socket, limit: Int = 64 << 20) -> ([UInt8], Bool) {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let result = chunk.withUnsafeMutableBytes { try? socket.receive(into: $0) }
            guard case .processed(let n)? = result else { return (out, false) }
            if n == 0 { return (out, true) }
            out.append(contentsOf: chunk[0..<n])
        }
        return (out, false)
    }

    /// An EchoServer with `--trace off` on a free port (found from its "listening on" line).
    static func quietServer(_ extra: [String] = []) throws -> (ChildProcess, UInt16) {
        let child = try ChildProcess("EchoServer", ["--port", "0", "--trace", "off"] + extra)
        var port: UInt16?
        _ = child.waitForStderr { text in
            guard let range = text.range(of: "listening on ") else { return false }
            let rest = text[range.upperBound...].prefix { $0 != " " && $0 != "\n" }
            port = SocketAddress(parsing: String(rest))?.port
            return port != nil
        }
        guard let port else {
            child.killNow()
            throw HarnessError("server did not report its port: \(child.stderrText)")
        }
        return (child, port)
    }

    @Test func manyClientsAtOnce_allGetExactEchoes_traced() throws {
        let server = try ServerProcess(["--threads", "2"])
        defer { _ = server.stop() }
        try Self.manyClients(port: server.port)
    }

    @Test func manyClientsAtOnce_allGetExactEchoes_traceOff() throws {
        let (child, port) = try Self.quietServer(["--threads", "2"])
        defer { child.signal(SIGTERM); child.wait() }
        try Self.manyClients(port: port)
    }

    static func manyClients(port: UInt16) throws {
        let server = (port: port, ())
        let pingpong = try load(port: server.port, mode: .pingpong, connections: 200, size: 64, seconds: 0.8)
        #expect(pingpong.ok, "\(pingpong.text)")
        let stream = try load(port: server.port, mode: .stream, connections: 16, size: 8192, seconds: 0.8)
        #expect(stream.ok, "\(stream.text)")
        let churn = try load(port: server.port, mode: .connect, connections: 8, size: 200, seconds: 0.5)
        #expect(churn.ok, "\(churn.text)")
    }

    @Test func aClientThatNeverReads_staysWithinTheBoundAndDoesNotStallOthers() throws {
        let (child, port) = try Self.quietServer(["--threads", "1"])
        defer { child.signal(SIGTERM); child.wait() }
        let server = (port: port, ())
        let pid = child.process.processIdentifier
        let before = Self.residentKiB(pid)
        // Three clients push 64 MiB each and never read: without backpressure the server would
        // queue it all. Sends stop once the kernel buffers and the server's bound are full.
        var stuck: [Socket] = []
        var pushed = 0
        let block = [UInt8](repeating: 0x5a, count: 1 << 16)
        for _ in 0..<3 {
            let socket = try Self.client(server.port)
            try socket.setNonBlocking(true)
            var idleSince = MonotonicClock.now()
            while pushed < 3 * (64 << 20) && MonotonicClock.now() - idleSince < 300_000_000 {
                if case .processed(let n)? = block.withUnsafeBytes({ try? socket.send($0) }) {
                    pushed += n
                    idleSince = MonotonicClock.now()
                } else { usleep(1000) }
            }
            stuck.append(socket)
        }
        defer { for socket in stuck { try? socket.close() } }
        #expect(pushed < 3 * (64 << 20), "the server kept reading from clients that never read")
        let others = try Self.load(port: server.port, mode: .pingpong, connections: 20, size: 64, seconds: 0.5)
        #expect(others.ok, "\(others.text)")
        let after = Self.residentKiB(pid)
        // Bound: 256 KiB pending per connection (+ allocator slack); far below 3 x 64 MiB.
        #expect(before > 0 && after - before < 8 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
    }

    @Test func halfCloseUnderBackpressure_losesNothing() throws {
        let server = try ServerProcess()
        defer { _ = server.stop() }
        let socket = try Self.client(server.port)
        defer { try? socket.close() }
        let payload = (0..<(12 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        // Write everything and FIN while nobody reads: the server is backpressured when the FIN lands.
        let writer = try ThreadHandle {
            var offset = 0
            while offset < payload.count {
                let result = payload.withUnsafeBytes { try? socket.send(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
                guard case .processed(let n)? = result else { return }
                offset += n
            }
            try? socket.shutdown(.write)
        }
        // Backpressure, seen from outside: the server stops reading (our bytes wait unread in its
        // receive queue, sock_diag's Recv-Q) while our sender is blocked with data in its own
        // send queue. Only then is the echo read.
        let port = try socket.localAddress().port
        #expect(waitFor(timeout: 20) { serverStoppedReading(port: server.port, peer: port) },
                "the server kept reading a client that does not read: no backpressure (\(socketsOn(port: server.port)))")
        let (echo, eof) = Self.readToEOF(socket)
        #expect(writer.join(timeoutSeconds: 60), "HUNG: the writer thread did not finish within 60 s")
        #expect(eof)
        #expect(echo.count == payload.count)
        #expect(echo == payload)
    }

    @Test func connectionsBeyondMaxConnections_areClosedAndLogged() throws {
        let server = try ServerProcess(["--max-connections", "2"])
        defer { _ = server.stop() }
        let first = try Self.client(server.port), second = try Self.client(server.port)
        defer { try? first.close(); try? second.close() }
        let third = try Self.client(server.port)
        defer { try? third.close() }
        let (rest, eof) = Self.readToEOF(third)
        #expect(eof && rest.isEmpty, "the connection over the limit should be closed at once")
        for socket in [first, second] {
            _ = try "ping".utf8.withContiguousStorageIfAvailable { try socket.send(UnsafeRawBufferPointer($0)) }
            var buffer = [UInt8](repeating: 0, count: 16)
            let result = try buffer.withUnsafeMutableBytes { try socket.receive(into: $0) }
            #expect(result == .processed(4))
        }
        #expect(server.child.waitForStderr(timeout: 5) { $0.contains("connection limit 2 reached") })
        // A slot frees up when a client leaves: once the server has closed it (listener + second).
        try first.close()
        #expect(waitForSockets(server.pid, atMost: 2, timeout: 10) <= 2, "\(socketsOn(port: server.port))")
        let (_, firstEOF) = (try? Self.client(server.port)).map { socket -> ([UInt8], Bool) in
            _ = "x".utf8.withContiguousStorageIfAvailable { try? socket.send(UnsafeRawBufferPointer($0)) }
            var buffer = [UInt8](repeating: 0, count: 4)
            let r = buffer.withUnsafeMutableBytes { try? socket.receive(into: $0) }
            try? socket.close()
            return ([], r == .processed(1))
        } ?? ([], false)
        #expect(firstEOF, "after one client left, a new one should be served")
    }

    @Test func idleConnections_areClosedAfterTheTimeout_activeOnesAreNot() throws {
        let server = try ServerProcess(["--idle-timeout", "0.4"])
        defer { _ = server.stop() }
        let idle = try Self.client(server.port)
        let busy = try Self.client(server.port)
        defer { try? idle.close(); try? busy.close() }
        let start = MonotonicClock.now()
        // The busy one talks every 100 ms for 1 s: never idle for 0.4 s.
        for _ in 0..<10 {
            _ = try "b".utf8.withContiguousStorageIfAvailable { try busy.send(UnsafeRawBufferPointer($0)) }
            var buffer = [UInt8](repeating: 0, count: 4)
            #expect(try buffer.withUnsafeMutableBytes { try busy.receive(into: $0) } == .processed(1))
            usleep(100_000)
        }
        let (_, eof) = Self.readToEOF(idle)
        #expect(eof, "the idle connection should have been closed")
        #expect(MonotonicClock.now() - start < 4_000_000_000)
        #expect(server.child.waitForStderr(timeout: 5) { $0.contains("--idle-timeout") })
        var buffer = [UInt8](repeating: 0, count: 4)
        _ = try "c".utf8.withContiguousStorageIfAvailable { try busy.send(UnsafeRawBufferPointer($0)) }
        #expect(try buffer.withUnsafeMutableBytes { try busy.receive(into: $0) } == .processed(1))
    }
}
