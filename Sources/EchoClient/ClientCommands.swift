import EchoKit
import Glibc
import SocketKit
import TCPTrace

/// The client's modes, wired from parsed options to SocketKit.
enum ClientCommands {
    static func echo(config: EchoClientConfiguration, messages: [String], options: CommandLineTrace,
                     interruption: ClientInterruption? = nil) throws -> Int32 {
        // Resolve first: a bad name is one line on stderr, before any trace starts.
        let addresses = try HostResolver.resolve(config.host, port: config.port)
        let sink = try options.makeSink()
        let kernel = options.makeKernelSource(command: "EchoClient", sink: sink, side: .client)
        let tracer = StateTracer(sink: sink, side: .client, verbose: options.verbose, kernel: kernel)
        let client = EchoClient(configuration: config, tracer: options.format == .off ? nil : tracer)
        client.interruption = interruption
        defer {
            tracer.follower.settle(timeoutSeconds: 0.2)
            tracer.follower.finish()
            kernel?.stop()
            sink.flush()
        }
        try client.connect(toFirstOf: addresses)
        do {
            if messages.isEmpty {
                let result = try client.stream(input: 0, output: 1)
                if !result.matched {
                    tracer.sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: .client, conn: client.tracker?.conn ?? 1,
                                                kind: .warning, cause: "echo differs: sent \(result.bytesSent) bytes, received \(result.bytesReceived)"))
                    return 1
                }
                return 0
            }
            let result = try client.exchange(messages: messages) { line in
                _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            }
            if !result.matched {
                SysExits.fail("EchoClient", "echo differs: sent \(result.bytesSent) bytes, received \(result.bytesReceived)", code: 1)
            }
            return 0
        } catch let error as ClientInterrupted {
            // SIGINT/SIGTERM: a clean close (our FIN, then close()), traced like any other.
            client.tracker?.info("\(error): closing the connection")
            try? client.halfClose()
            client.close()
            throw error
        } catch {
            client.noteFailure(error)
            client.close()
            throw error
        }
    }

    static func demo(host: String, port: UInt16, options: CommandLineTrace, pictures: PictureOptions) throws -> Int32 {
        // The note goes with the demo's own events (the timeline is printed at the end).
        let collector = TraceCollector()
        let kernel = options.makeKernelSource(command: "EchoClient", sink: collector, side: .client)
        defer { kernel?.stop() }
        if let note = collector.events.first?.cause, options.format == .text { options.write("EchoClient --demo: \(note)\n") }
        let outcome = try EchoDemo.run(host: host, port: port, kernel: kernel) { line in
            _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        }
        let sink = try options.makeSink()
        if options.format == .json {
            for event in (collector.events + outcome.events).sorted(by: { $0.timestampNs < $1.timestampNs }) { sink.emit(event) }
            sink.flush()
        } else if options.format == .text {
            let width = options.path == nil ? TerminalWidth.columns(fd: 2) : nil
            let renderer = LadderRenderer(color: options.color, width: width)
            var text = "\nBoth sides of one connection, in time order:\n\n"
            text += renderer.render(outcome.events).joined(separator: "\n")
            text += "\n\n" + LadderRenderer.legend(width: width) + "\n\nStates each socket passed through ((…) = inferred):\n"
            text += LadderRenderer.sequences(outcome.events).map { "  " + $0 }.joined(separator: "\n")
            let closing = "The client half-closed with shutdown(SHUT_WR) before the last echo arrived and still received "
                + "\(outcome.bytesAfterOurFIN) bytes after its FIN: a half-closed connection carries data the other way."
            text += "\n\n" + (width.map { TextWrap.paragraph(closing, width: $0) } ?? closing) + "\n"
            options.write(text)
        }
        let verdict: LadderPicture.Verdict = outcome.matched
            ? .matched("every echo came back; \(outcome.bytesAfterOurFIN) bytes arrived after the client's FIN")
            : .differs("the echo differed")
        try writePictures(pictures, LadderPicture(title: "EchoClient --demo: one connection, the client half-closes first",
                                                  verdict: verdict, events: outcome.events), options: options)
        return outcome.matched ? 0 : 1
    }

    static func merge(paths: [String], options: CommandLineTrace, pictures: PictureOptions) throws -> Int32 {
        guard !paths.isEmpty else { throw UsageError("--merge needs one or more JSON trace files") }
        var events: [TraceEvent] = []
        for path in paths {
            do {
                events += try TraceEvent.read(jsonLinesAt: path)
            } catch {
                throw SystemCallError(call: "open", errno: ENOENT, subject: path)
            }
        }
        let lines = LadderRenderer(color: options.color && isatty(1) == 1, width: TerminalWidth.columns(fd: 1)).render(events)
        print(lines.joined(separator: "\n"))
        print("\n" + LadderRenderer.legend(width: TerminalWidth.columns(fd: 1)))
        try writePictures(pictures, LadderPicture(title: "Merged trace: " + paths.joined(separator: " + "), events: events),
                          options: options)
        return 0
    }

    /// `--picture` / `--state-diagram`; says where they went unless the trace is JSON (every
    /// line of a JSON trace stays JSON).
    static func writePictures(_ pictures: PictureOptions, _ picture: LadderPicture, options: CommandLineTrace) throws {
        for line in try pictures.write(picture) where options.format != .json {
            options.write("EchoClient: \(line)\n")
        }
    }
}
