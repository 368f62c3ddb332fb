import Foundation
import Testing
@testable import SocketKit
@testable import TCPTrace
import EchoKit

/// Text that fits the terminal: widths 80, 120 and 200 through the width override, the full
/// layout for pipes and files, and the rule that reads the width.
@Suite struct TerminalLayoutTests {
    static let long = "shutdown(SHUT_WR): our FIN sent; the fd reads CLOSED, the kernel holds the connection in a TIME_WAIT mini-socket"

    static func state(_ ns: UInt64, _ side: TraceSide, _ conn: Int, _ from: TCPState, _ to: TCPState,
                      _ source: ObservationSource, cause: String = long) -> TraceEvent {
        var event = TraceEvent(timestampNs: ns, side: side, conn: conn, local: side == .server ? "127.0.0.1:7007" : "127.0.0.1:53422",
                               peer: side == .server ? "127.0.0.1:53422" : "127.0.0.1:7007", kind: .state, from: from, to: to,
                               source: source, cause: cause, inStateNs: 41_000_000)
        event.timerMs = to == .timeWait ? 60_000 : nil
        return event
    }

    static let events: [TraceEvent] = [
        TraceEvent(timestampNs: 1, side: .client, conn: 0, kind: .info, cause: "kernel trace off (--kernel-trace off): states from tcp_info, sock_diag and inference"),
        state(10, .server, 1, .listen, .synReceived, .inferred, cause: "SYN arrived on the listener; the kernel finished the handshake before accept() returned"),
        state(20, .server, 1, .synReceived, .established, .tcpInfo, cause: "accept()"),
        state(30, .client, 1, .established, .finWait1, .inferred),
        state(30, .client, 1, .finWait1, .finWait2, .inferred),
        state(30, .client, 1, .finWait2, .timeWait, .sockDiag),
        state(40, .server, 1, .established, .closeWait, .tcpInfo, cause: "recv()=0: peer sent FIN"),
        TraceEvent(timestampNs: 50, side: .client, conn: 2, local: "127.0.0.1:53423", peer: "127.0.0.1:7999", kind: .error,
                   cause: "connect(127.0.0.1:7999): Connection refused (ECONNREFUSED)"),
    ]

    static func visible(_ line: Substring) -> Int {
        var count = 0, inEscape = false
        for c in line {
            if c == "\u{1b}" { inEscape = true; continue }
            if inEscape { if c == "m" { inEscape = false }; continue }
            count += 1
        }
        return count
    }

    /// No line wider than `width`; every transition `FROM → TO` intact on one line; no word
    /// that is a piece of a state name.
    static func checkFits(_ text: String, width: Int) {
        let names = TCPState.all.map(\.name)
        for line in text.split(separator: "\n") {
            #expect(visible(line) <= width, "\(visible(line)) > \(width): \(line)")
            for token in line.split(separator: " ") {
                let word = token.trimmingCharacters(in: CharacterSet(charactersIn: "[],()"))
                // (SYN, FIN, ACK are words of their own in causes.)
                if word.count >= 4, word.allSatisfy({ $0.isUppercase || $0 == "_" || $0.isNumber }),
                   names.contains(where: { $0.hasPrefix(word) }) {
                    #expect(names.contains(word), "a state name was split: \(word) in \(line)")
                }
            }
        }
        for event in events where event.kind == .state {
            let pattern = "\(event.from!.name) → \(event.to!.name)"
            let squeezed = text.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
            #expect(squeezed.contains { $0.contains(pattern) }, "\(pattern) not on one line")
        }
    }

    @Test(arguments: [80, 120, 200], [false, true])
    func trace_fitsTheWidth(width: Int, color: Bool) {
        var renderer = TextTraceRenderer(baseNs: 0, color: color, width: width)
        let text = Self.events.map { renderer.fitted($0) }.joined(separator: "\n")
            .replacing("\u{1b}[2m", with: "").replacing("\u{1b}[0m", with: "")
        Self.checkFits(text, width: width)
        if width <= TextTraceRenderer.compactWidth {
            // Compact: each connection's addresses once, on their own line.
            #expect(text.split(separator: "\n").filter { $0.contains("127.0.0.1:7007 ⇄ 127.0.0.1:53422") }.count == 1)
            #expect(text.split(separator: "\n").filter { $0.contains("127.0.0.1:53422 ⇄ 127.0.0.1:7007") }.count == 1)
        }
    }

    @Test(arguments: [80, 120, 200])
    func ladder_fitsTheWidth(width: Int) {
        let lines = LadderRenderer(color: false, width: width).render(Self.events)
        Self.checkFits(lines.joined(separator: "\n"), width: width)
        #expect(lines[0].contains("CLIENT") && lines[0].contains("SERVER"))
        #expect(LadderRenderer.legend(width: width).split(separator: "\n").allSatisfy { $0.count <= width })
    }

    @Test func pipesAndFiles_keepOneFullLinePerEvent() {
        var renderer = TextTraceRenderer(baseNs: 0, color: false, width: nil)
        for event in Self.events {
            let line = renderer.fitted(event)
            #expect(line == TextTraceRenderer(baseNs: 0, color: false).render(event))
            #expect(!line.contains("\n"))
        }
        #expect(LadderRenderer(color: false).render(Self.events).count == Self.events.count + 1)
    }

    @Test func infoLines_areNotPaddedWithDashes_andErrnoNamesAppearOnce() {
        let renderer = TextTraceRenderer(baseNs: 0, color: false)
        #expect(!renderer.render(Self.events[0]).contains("- ⇄ -"))
        var error = Self.events[7]
        error.errno = ECONNREFUSED
        let line = renderer.render(error)
        #expect(line.components(separatedBy: "(ECONNREFUSED)").count == 2, "\(line)")
        error.cause = "connect(127.0.0.1:7999): Connection refused"
        #expect(renderer.render(error).hasSuffix("Connection refused (ECONNREFUSED)"))
    }

    @Test func width_comesFromCOLUMNS_thenTheKernel_thenEighty() {
        #expect(TerminalWidth.resolve(columnsVariable: "132", reported: 80) == 132)
        #expect(TerminalWidth.resolve(columnsVariable: "wide", reported: 100) == 100)
        #expect(TerminalWidth.resolve(columnsVariable: nil, reported: 0) == 80)
        // A pipe is not a terminal: full lines, whatever COLUMNS says.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        #expect(TerminalWidth.columns(fd: fds[1]) == nil)
        close(fds[0]); close(fds[1])
    }
}
