
import Glibc
import SocketKit
import TCPTrace
import WireFaults

/// `--expect echo|any`: what the client requires of the peer's reply.
public enum ExpectMode: String, CaseIterable {
    /// The reply must be the exact echo; anything else exits 1 with a verdict.
    case echo
    /// Any request/response peer: send, half-close, print what comes back (escaped) to EOF.
    case any
}

/// The client's modes, wired from parsed options to SocketKit. Nothing here exits: results and
/// errors go back to `CommandExit.run` in main, which finishes the trace session first.
public enum ClientCommands {
    public static func echo(config: EchoClientConfiguration, messages: [String], expect: ExpectMode, options: CommandLineTrace,
                     wire: WireOption, interruption: ClientInterruption? = nil) throws -> Int32 {
        // Resolve first: a bad name is one line on stderr, before any trace starts.
        let addresses = try HostResolver.resolve(config.host, port: config.port)
        // With the live wire, states (this thread) and segments (the capture thread) reach the
        // trace late by different amounts: written in time order.
        let writer = try options.makeSink()
        let session = TraceSession(sink: wire.mode == .off ? writer : TimeOrderedSink(target: writer))
        session.makeCurrent()
        let kernel = try options.makeKernelSource(command: "EchoClient", sink: session.sink, side: .client)
        session.attach(kernel)
        let tracer = StateTracer(sink: session.sink, side: .client, verbose: options.verbose, kernel: kernel)
        session.add(tracer)
        // Started before connect(): the SYN must pass a filter that already names the port.
        session.attach(try wire.startLive(command: "EchoClient", side: .client, serverPort: config.port, sink: session.sink,
                                          local: addresses.first.flatMap(WireInterface.sourceAddress(toward:)), peer: addresses.first),
                       side: .client)
        let client = EchoClient(configuration: config, tracer: options.format == .off ? nil : tracer)
        client.interruption = interruption
        try client.connect(toFirstOf: addresses)
        let comparison: EchoComparison
        do {
            if messages.isEmpty {
                comparison = try client.stream(input: 0, output: 1, expectEcho: expect == .echo).comparison
            } else if expect == .echo {
                comparison = try client.exchange(messages: messages) { writeOut($0) }.comparison
            } else {
                var last: UInt8?
                comparison = try client.request(messages: messages) { bytes in
                    writeOut(Array(ByteEscaping.escapeKeepingLines(bytes).utf8))
                    last = bytes.last ?? last
                }.comparison
                if let last, last != UInt8(ascii: "\n") { writeOut([UInt8(ascii: "\n")]) }
            }
        } catch let error as SystemCallError where error.call == "write" && error.errno == EPIPE {
            // stdout's reader went away (`| head -1`): stop quietly, like cat in a pipe, after
            // a clean close of the connection.
            client.socket?.info("stdout closed by its reader: closing the connection")
            try? client.halfClose()
            client.close()
            return 0
        } catch let error as ClientInterrupted {
            // SIGINT/SIGTERM: a clean close (our FIN, then close()), traced like any other.
            client.socket?.info("\(error): closing the connection")
            try? client.halfClose()
            client.close()
            throw error
        } catch {
            client.noteFailure(error)
            client.close()
            throw error
        }
        let verdict = comparison.verdict(expectEcho: expect == .echo)
        let text = comparison.describe(verdict)
        var event = client.socket?.event(.verdict, cause: text)
            ?? TraceEvent(timestampNs: MonotonicClock.now(), side: .client, conn: 1, kind: .verdict, cause: text)
        event.verdict = verdict
        event.bytes = Array(comparison.firstBytesReceived)
        event.byteCount = comparison.received
        session.conclude(with: event)
        if !verdict.ok { throw EchoMismatch(verdict: verdict, description: text) }
        return 0
    }

    /// One message on the trace stream, wrapped with a hanging indent on a terminal (a file
    /// keeps it on one line).
    static func writeLine(_ text: String, _ options: CommandLineTrace) {
        options.write(wrap(text, options.path == nil ? TerminalWidth.columns(fd: 2) : nil) + "\n")
    }

    static func wrap(_ text: String, _ width: Int?) -> String {
        width.map { TextWrap.paragraph(text, width: $0, indent: 2) } ?? text
    }

    /// stdout carries data only (a failed write there has nowhere better to be reported).
    private static func writeOut(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    }

    public static func demo(host: String, port: UInt16, options: CommandLineTrace, pictures: PictureOptions, wire: WireOption,
                            faults: [FaultRule] = []) throws -> Int32 {
        let sink = try options.makeSink()
        let session = TraceSession(sink: sink)
        session.makeCurrent()
        // The note goes with the demo's own events (the timeline is printed at the end).
        let collector = TraceCollector()
        let kernel = try options.makeKernelSource(command: "EchoClient", sink: collector, side: .client)
        session.attach(kernel)
        if let note = collector.events.first?.cause, options.format == .text { writeLine("EchoClient --demo: \(note)", options) }
        if options.format == .text { writeLine("EchoClient --demo: \(wire.line)", options) }
        let notes = collector.events.count
        let outcome: EchoDemo.Outcome
        do {
            outcome = try EchoDemo.run(host: host, port: port, kernel: kernel, collector: collector, wire: wire.active,
                                       pcapPath: wire.pcapPath, faults: faults.isEmpty ? nil : faults) { writeOut($0) }
        } catch {
            // The timeline so far is what explains the failure: show it before the error line.
            present(collector.events, notes: notes, sink: sink, options: options)
            throw error
        }
        // With the wire, the outcome's events hold the segments too, states stamped with them.
        // The notes are stamped before the demo starts: still first after the wire's join.
        let raw = outcome.wireSummary == nil ? collector.events : outcome.events
        // Both sides in causal order (RFC 9293), each moved stamp inside its interval and said.
        let timeline = Array(raw.prefix(notes)) + CausalOrder.apply(Array(raw.dropFirst(notes)))
        present(timeline, notes: notes, sink: sink, options: options, wireSummary: outcome.wireSummary)
        let claims = DemoClaims(outcome)
        if options.format == .text {
            options.write("\n")
            for paragraph in claims.paragraphs { writeLine(paragraph, options) }
        }
        let verdict: LadderPicture.Verdict = outcome.matched ? .matched("every echo came back; " + claims.subtitle) : .differs("the echo differed")
        try writePictures(pictures, LadderPicture(title: "EchoClient --demo: one connection, the client half-closes first",
                                                  verdict: verdict, timeline: Array(timeline.dropFirst(notes))), options: options)
        return outcome.matched ? 0 : 1
    }

    /// The demo's timeline: JSON events in time order, or the ladder with its state sequences
    /// (without the first `notes` events, already printed as text).
    private static func present(_ all: [TraceEvent], notes: Int, sink: TraceSink, options: CommandLineTrace,
                                wireSummary: String? = nil) {
        let events = options.format == .json ? all : Array(all.dropFirst(notes))
        if options.format == .json {
            for event in events.sorted(by: { $0.timestampNs < $1.timestampNs }) { sink.emit(event) }
            sink.flush()
        } else if options.format == .text {
            let width = options.path == nil ? TerminalWidth.columns(fd: 2) : nil
            let renderer = LadderRenderer(color: options.color, width: width)
            var text = "\nBoth sides of one connection, in time order:\n\n"
            text += renderer.render(events).joined(separator: "\n")
            text += "\n\n" + LadderRenderer.legend(width: width) + "\n"
            if let wireSummary { text += wrap(LadderRenderer.wireLegend + "\n" + wireSummary, width) + "\n" }
            text += "\nStates each socket passed through ((…) = inferred):\n"
            text += LadderRenderer.sequences(events).map { wrap("  " + $0, width) }.joined(separator: "\n") + "\n"
            options.write(text)
        }
    }

    /// `--merge`: the connections seen from both ends (a server trace holds every connection
    /// it served, a client trace one), or everything with `all` (`--merge-all`).
    public static func merge(paths: [String], all: Bool, options: CommandLineTrace, pictures: PictureOptions) throws -> Int32 {
        guard !paths.isEmpty else { throw UsageError("--merge needs one or more JSON trace files") }
        var events: [TraceEvent] = []
        for path in paths {
            do {
                events += try TraceEvent.read(jsonLinesAt: path)
            } catch {
                throw SystemCallError(call: "open", errno: ENOENT, subject: path)
            }
        }
        let selection = ConnectionMatcher.select(events, matchedOnly: !all)
        // On stderr: stdout is the ladder, which may be going to a file.
        if let note = selection.note {
            let width = TerminalWidth.columns(fd: 2)
            let line = "EchoClient --merge: " + note
            _ = ((width.map { TextWrap.paragraph(line, width: $0) } ?? line) + "\n").withCString { write(2, $0, strlen($0)) }
        }
        events = CausalOrder.apply(WireMerge.join(selection.events))
        let lines = LadderRenderer(color: options.color && isatty(1) == 1, width: TerminalWidth.columns(fd: 1)).render(events)
        print(lines.joined(separator: "\n"))
        print("\n" + LadderRenderer.legend(width: TerminalWidth.columns(fd: 1)))
        if events.contains(where: { $0.kind == .segment }) { print(wrap(LadderRenderer.wireLegend, TerminalWidth.columns(fd: 1))) }
        try writePictures(pictures, LadderPicture(title: "Merged trace: " + paths.joined(separator: " + "), timeline: events),
                          options: options)
        return 0
    }

    /// `--picture` / `--state-diagram`; says where they went unless the trace is JSON (every
    /// line of a JSON trace stays JSON).
    public static func writePictures(_ pictures: PictureOptions, _ picture: LadderPicture, options: CommandLineTrace) throws {
        for line in try pictures.write(picture) where options.format != .json {
            writeLine("EchoClient: \(line)", options)
        }
    }
}
