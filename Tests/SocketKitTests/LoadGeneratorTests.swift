import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct LoadGeneratorTests {
    @Test func histogram_percentilesStayWithinThreePercentAndNeverExceedMax() {
        var histogram = LatencyHistogram()
        for value in 1...10_000 { histogram.record(UInt64(value) * 1000) }
        for (fraction, exact) in [(0.5, 5_000_000.0), (0.9, 9_000_000.0), (0.99, 9_900_000.0)] {
            let got = Double(histogram.percentile(fraction))
            #expect(got >= exact && got <= exact * 1.035, "p\(fraction * 100) = \(got), exact \(exact)")
        }
        #expect(histogram.maxNs == 10_000_000)
        #expect(histogram.percentile(1.0) == 10_000_000)
        #expect(histogram.count == 10_000)
        #expect(LatencyHistogram().percentile(0.5) == 0)
    }

    @Test func histogram_bucketsCoverEveryValue() {
        for value: UInt64 in [0, 1, 31, 32, 33, 1000, 123_456_789, UInt64.max / 3] {
            let index = LatencyHistogram.index(value)
            #expect(LatencyHistogram.upperBound(index) >= value)
            if index > 0 { #expect(LatencyHistogram.upperBound(index - 1) < value) }
        }
    }

    @Test func pattern_detectsOneChangedByteAndAnotherConnectionsBytes() {
        let pattern = LoadPattern(maxChunk: 1000)
        var bytes = pattern.withBytes(at: 70_000, count: 1000) { Array($0) }
        #expect(bytes.withUnsafeBytes { pattern.matches($0, at: 70_000) })
        #expect(!bytes.withUnsafeBytes { pattern.matches($0, at: 70_001) })
        bytes[500] ^= 1
        #expect(!bytes.withUnsafeBytes { pattern.matches($0, at: 70_000) })
        // Longer than one chunk: checked piecewise across the table's wrap-around.
        let long = (0..<5000).map { i in pattern.withBytes(at: 65_000 + UInt64(i), count: 1) { $0[0] } }
        #expect(long.withUnsafeBytes { pattern.matches($0, at: 65_000) })
    }

    @Test func validate_rejectsOutOfRangeOptions() {
        var config = LoadConfiguration()
        config.connections = 0
        #expect(throws: UsageError.self) { try config.validate() }
        config.connections = 1
        config.durationSeconds = 0
        #expect(throws: UsageError.self) { try config.validate() }
    }

    static func startServer(threads: Int = 2) throws -> (EchoServer, ThreadHandle, UInt16) {
        var config = EchoServerConfiguration()
        config.port = 0
        config.threads = threads
        config.drainTimeoutSeconds = 1
        let server = EchoServer(configuration: config, tracer: nil)
        let address = try server.bind()
        return (server, try server.start(), address.port)
    }

    @Test(arguments: LoadConfiguration.Mode.allCases)
    func everyMode_againstTheEchoServer_verifiesEveryByte(mode: LoadConfiguration.Mode) throws {
        let (server, thread, port) = try Self.startServer()
        defer { server.stop(); #expect(thread.join(timeoutSeconds: 30), "HUNG: the server thread did not end within 30 s") }
        var config = LoadConfiguration()
        config.port = port
        config.mode = mode
        config.connections = 8
        config.durationSeconds = 0.4
        config.size = mode == .stream ? 16_384 : 100
        let report = try LoadGenerator(configuration: config).run()
        #expect(report.ok, "\(report.text)")
        #expect(report.operations > 0 && report.latency.count == report.operations)
        #expect(report.bytesVerified >= report.operations * (mode == .stream ? 16_384 : 100))
        #expect(report.json.hasPrefix("{\"type\":\"load\"") && report.json.contains("\"ok\":true"))
    }

    /// A server that corrupts one byte of the echo, or closes before echoing everything.
    static func faultyServer(corrupt: Bool) throws -> (Socket, ThreadHandle, UInt16) {
        let listener = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        try listener.setNonBlocking(false)
        let port = try listener.localAddress().port
        let thread = try ThreadHandle {
            guard case .processed(let socket)? = try? listener.accept() else { return }
            try? socket.setNonBlocking(false)
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { (try? socket.receive(into: $0)).flatMap { if case .processed(let n) = $0 { n } else { nil } } ?? 0 }
            if corrupt && n > 0 {
                buffer[n - 1] ^= 0x40
                _ = buffer.withUnsafeBytes { try? socket.send(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            } else if n > 1 {
                _ = buffer.withUnsafeBytes { try? socket.send(UnsafeRawBufferPointer(rebasing: $0[0..<(n / 2)])) }
            }
            usleep(50_000)
            try? socket.close()
        }
        return (listener, thread, port)
    }

    @Test(arguments: [true, false])
    func aFaultyServer_isReportedAsFailed(corrupt: Bool) throws {
        let (listener, thread, port) = try Self.faultyServer(corrupt: corrupt)
        defer { #expect(thread.join(timeoutSeconds: 30), "HUNG: the peer thread did not end within 30 s"); try? listener.close() }
        var config = LoadConfiguration()
        config.port = port
        config.connections = 1
        config.durationSeconds = 0.3
        config.size = 64
        config.timeoutSeconds = 2
        let report = try LoadGenerator(configuration: config).run()
        #expect(!report.ok)
        if corrupt { #expect(report.mismatches == 1) } else { #expect(report.lostBytes == 32 && report.ioErrors == 1) }
        #expect(report.text.contains("result: FAILED"))
    }

    @Test func refusedConnections_areCountedNotFatal() throws {
        // Bind a port and close it again: nothing listens there now.
        let probe = try Socket.listening(on: SocketAddress(parsing: "127.0.0.1:0")!)
        let port = try probe.localAddress().port
        try probe.close()
        var config = LoadConfiguration()
        config.port = port
        config.connections = 2
        config.durationSeconds = 0.2
        let report = try LoadGenerator(configuration: config).run()
        #expect(report.connectErrors == 2 && !report.ok)
        #expect(report.firstError?.contains("ECONNREFUSED") == true || report.firstError?.contains("refused") == true)
    }
}
