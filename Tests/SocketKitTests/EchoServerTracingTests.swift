import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// The server's tracing in-process: warnings and states a user relies on.
@Suite struct EchoServerTracingTests {
    /// A server that withholds close() after the peer's FIN sits in CLOSE_WAIT: the trace must
    /// say so, once, after the threshold.
    @Test func closeWaitWarning_firesWhenServerWithholdsClose() throws {
        let sink = TraceCollector()
        try withWithholdingServer(sink: sink, warnAfter: 0.3, waitSeconds: 5) { client in
            let warnings = sink.events.filter { $0.kind == .warning && $0.conn == 1 }
            #expect(warnings.count == 1)
            #expect(warnings.first?.cause.contains("the application has not called close()") == true)
            #expect(warnings.first?.from == .closeWait)
            // The peer, meanwhile, waits in FIN_WAIT_2 for a FIN that does not come.
            let state = try client.tcpInfo().state
            #expect(state == .finWait2)
        }
    }

    /// README: `--close-wait-warn SECONDS` (default 5). Parsed into CommandLineTrace and wired
    /// into the tracer as EchoServer's main does: the warning comes after that long in CLOSE_WAIT, not before; the
    /// default has not fired by then.
    @Test(arguments: [(["--close-wait-warn", "0.6"], true), ([], false)] as [([String], Bool)])
    func closeWaitWarnOption_setsTheThreshold(arguments: [String], warns: Bool) throws {
        // The spec as EchoServer's main declares it (the executable's parser owning the option
        // is checked end to end in ReadmeClaimsTests).
        let scanner = ArgumentScanner(command: "EchoServer", options: OptionSpec.traceOptions(verboseHelp: "")
                                      + [OptionSpec("--close-wait-warn", value: "SECONDS", help: "")], allowsPositionals: false)
        let options = try CommandLineTrace.options(try scanner.parse(arguments))
        #expect(options.closeWaitWarnSeconds == (warns ? 0.6 : 5))
        let sink = TraceCollector()
        try withWithholdingServer(sink: sink, warnAfter: options.closeWaitWarnSeconds, waitSeconds: 2) { _ in
            let entered = sink.events.first { $0.side == .server && $0.to == .closeWait }
            let warning = sink.events.first { $0.kind == .warning && $0.from == .closeWait }
            if warns {
                let entered = try #require(entered), warning = try #require(warning, "warned within 2 s")
                #expect(warning.timestampNs - entered.timestampNs >= 600_000_000, "not before the threshold")
            } else {
                #expect(warning == nil, "the 5 s default has not fired within 2 s")
            }
        }
    }

    /// A one-loop server that never closes after the peer's FIN, and a client that half-closed
    /// to it; runs `body` once a warning arrived or `waitSeconds` passed, with the server still up.
    private func withWithholdingServer(sink: TraceCollector, warnAfter: Double, waitSeconds: Double,
                                       _ body: (Socket) throws -> Void) throws {
        var config = EchoServerConfiguration()
        config.port = 0
        config.threads = 1
        config.withholdClose = true
        config.drainTimeoutSeconds = 0.2
        let tracer = StateTracer(sink: sink, side: .server, closeWaitWarnSeconds: warnAfter, firstConnectionID: 0)
        let server = EchoServer(configuration: config, tracer: tracer)
        let address = try server.bind()
        let thread = try server.start()
        defer { server.stop(); #expect(thread.join(timeoutSeconds: 30), "HUNG: the server thread did not end within 30 s") }
        let client = try Socket(family: AF_INET, nonBlocking: false)
        defer { try? client.close() }
        try client.connect(to: address)
        try client.shutdown(.write)
        let deadline = MonotonicClock.now() + UInt64(waitSeconds * 1e9)
        while !sink.events.contains(where: { $0.kind == .warning }) && MonotonicClock.now() < deadline { usleep(10_000) }
        try body(client)
    }

    @Test func listenerReportsTheRealPortForPortZero() throws {
        let sink = TraceCollector()
        var config = EchoServerConfiguration()
        config.port = 0
        config.threads = 2
        let server = EchoServer(configuration: config, tracer: StateTracer(sink: sink, side: .server, firstConnectionID: 0))
        let address = try server.bind()
        #expect(address.port != 0)
        // One listener shared by both loops (no SO_REUSEPORT group): one LISTEN, one close.
        let listens = sink.events.filter { $0.to == .listen }
        #expect(listens.count == 1)
        #expect(listens.allSatisfy { $0.local == address.description && $0.source == .tcpInfo })
        let thread = try server.start()
        server.stop()
        #expect(thread.join(timeoutSeconds: 30), "HUNG: the thread did not end within 30 s")
        #expect(sink.events.filter { $0.from == .listen && $0.to == .closed && $0.source == .tcpInfo }.count == 1)
    }
}
