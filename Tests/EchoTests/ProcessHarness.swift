import Foundation
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// A JSON-tracing EchoServer on a free port of 127.0.0.1.
final class ServerProcess: @unchecked Sendable {
    let child: ChildProcess
    let port: UInt16

    /// - Parameter traceFile: send the JSON trace there instead of stderr (long, busy tests:
    ///   the port then comes from the "listening on" line).
    init(_ extra: [String] = [], traceFile: String? = nil, wrapper: [String] = []) throws {
        let trace = traceFile.map { ["--trace-file", $0] } ?? []
        child = try ChildProcess("EchoServer", ["--port", "0", "--trace", "json", "--threads", "1"] + trace + extra,
                                 wrapper: wrapper)
        var found: UInt16?
        _ = child.waitForStderr { text in
            for line in text.split(separator: "\n") {
                if let range = line.range(of: "listening on "),
                   let address = SocketAddress(parsing: String(line[range.upperBound...].prefix { $0 != " " })) {
                    found = address.port
                    return true
                }
                // The text trace's LISTEN line.
                if line.contains("→ LISTEN"), let range = line.range(of: "127.0.0.1:") {
                    found = UInt16(line[range.upperBound...].prefix(while: \.isNumber))
                    if found != nil { return true }
                }
                if let e = TraceEvent(jsonLine: line), e.to == .listen, let local = e.local,
                   let address = SocketAddress(parsing: local) {
                    found = address.port
                    return true
                }
            }
            return false
        }
        guard let found else {
            child.killNow()
            throw HarnessError("server did not report LISTEN: \(child.stderrText)")
        }
        port = found
    }

    var pid: Int32 { child.pid }

    /// SIGTERM and wait (bounded: drain timeout + margin); idempotent (a second call returns
    /// the first exit status).
    func stop(timeout: Double = 20, sourceLocation: SourceLocation = #_sourceLocation) -> Int32 {
        if !child.process.isRunning { return child.wait(sourceLocation: sourceLocation) }
        child.signal(SIGTERM)
        return child.wait(timeout: timeout, "exit after SIGTERM", sourceLocation: sourceLocation)
    }
}

extension Array where Element == TraceEvent {
    /// The `to` states of state events for one side and connection, in order.
    func states(side: TraceSide, conn: Int? = nil) -> [TCPState] {
        filter { $0.kind == .state && $0.side == side && (conn == nil || $0.conn == conn) }.compactMap(\.to)
    }
}
