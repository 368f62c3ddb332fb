import SocketKit
import TCPTrace

/// The outcome of a load run: throughput, latency percentiles and every kind of failure.
public struct LoadReport: Sendable {
    public var mode: LoadConfiguration.Mode
    public var connections: Int
    public var size: Int
    public var threads: Int
    /// From the first connect() to the end of the measured window.
    public var elapsedSeconds: Double
    /// Completed round trips (pingpong), echoed chunks (stream) or connect/echo/close cycles (connect).
    public var operations: UInt64 = 0
    /// Echo bytes received and verified inside the measured window.
    public var bytesVerified: UInt64 = 0
    public var latency = LatencyHistogram()
    /// connect() refused, unreachable, EADDRNOTAVAIL...
    public var connectErrors = 0
    /// Resets and other send/recv errors on established connections.
    public var ioErrors = 0
    /// Echo bytes that differed from what was sent (the connection is closed at the first).
    public var mismatches = 0
    /// Connections that made no progress for `timeoutSeconds`.
    public var timeouts = 0
    /// Bytes sent but never echoed (the server closed or the run timed out first).
    public var lostBytes: UInt64 = 0
    /// Connections whose server never closed after our FIN and the complete echo.
    public var missingEOF = 0
    /// The first failure seen, for the message.
    public var firstError: String?

    public var errorCount: Int { connectErrors + ioErrors + mismatches + timeouts + missingEOF }
    /// Every byte came back, in order, and every connection ended cleanly.
    public var ok: Bool { errorCount == 0 && lostBytes == 0 && operations > 0 }

    public var operationsPerSecond: Double { elapsedSeconds > 0 ? Double(operations) / elapsedSeconds : 0 }
    public var megabytesPerSecond: Double { elapsedSeconds > 0 ? Double(bytesVerified) / elapsedSeconds / 1e6 : 0 }

    mutating func merge(_ other: LoadReport) {
        operations += other.operations
        bytesVerified += other.bytesVerified
        latency.merge(other.latency)
        connectErrors += other.connectErrors
        ioErrors += other.ioErrors
        mismatches += other.mismatches
        timeouts += other.timeouts
        lostBytes += other.lostBytes
        missingEOF += other.missingEOF
        firstError = firstError ?? other.firstError
    }

    private var unit: String {
        switch mode {
        case .pingpong: return "req/s"
        case .stream: return "chunks/s"
        case .connect: return "conn/s"
        }
    }

    private static func micros(_ ns: UInt64) -> String { fixed(Double(ns) / 1000, 1) }

    static func fixed(_ value: Double, _ digits: Int) -> String {
        if digits == 0 { return "\(Int(value.rounded()))" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        if let dot = text.firstIndex(of: ".") {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
        }
        return text
    }

    /// A few human-readable lines.
    public var text: String {
        var lines = [
            "load: \(mode.rawValue), \(connections) connections, \(size)-byte messages, \(threads) threads, \(Self.fixed(elapsedSeconds, 2)) s",
            "throughput: \(Self.fixed(operationsPerSecond, 0)) \(unit), \(Self.fixed(megabytesPerSecond, 2)) MB/s echoed and verified (\(operations) operations, \(bytesVerified) bytes)",
            "latency µs: p50 \(Self.micros(latency.percentile(0.5))), p90 \(Self.micros(latency.percentile(0.9))), p99 \(Self.micros(latency.percentile(0.99))), max \(Self.micros(latency.maxNs))",
            "errors: \(connectErrors) connect, \(ioErrors) io, \(mismatches) mismatched, \(timeouts) timeouts, \(missingEOF) without EOF; \(lostBytes) bytes lost",
        ]
        if let firstError { lines.append("first error: \(firstError)") }
        lines.append(ok ? "result: ok, every byte verified" : "result: FAILED")
        return lines.joined(separator: "\n")
    }

    /// One JSON object on one line (`--report json`).
    public var json: String {
        var fields: [String] = [
            "\"type\":\"load\"", "\"mode\":\"\(mode.rawValue)\"", "\"connections\":\(connections)", "\"size\":\(size)",
            "\"threads\":\(threads)", "\"elapsed_s\":\(Self.fixed(elapsedSeconds, 3))", "\"operations\":\(operations)",
            "\"ops_per_s\":\(Self.fixed(operationsPerSecond, 1))", "\"bytes\":\(bytesVerified)",
            "\"mb_per_s\":\(Self.fixed(megabytesPerSecond, 3))",
            "\"latency_us\":{\"p50\":\(Self.micros(latency.percentile(0.5))),\"p90\":\(Self.micros(latency.percentile(0.9))),\"p99\":\(Self.micros(latency.percentile(0.99))),\"max\":\(Self.micros(latency.maxNs))}",
            "\"connect_errors\":\(connectErrors)", "\"io_errors\":\(ioErrors)", "\"mismatches\":\(mismatches)",
            "\"timeouts\":\(timeouts)", "\"missing_eof\":\(missingEOF)", "\"lost_bytes\":\(lostBytes)", "\"ok\":\(ok)",
        ]
        if let firstError { fields.append("\"first_error\":" + JSONTraceRenderer.quoted(firstError)) }
        return "{" + fields.joined(separator: ",") + "}"
    }
}
