import Foundation
import Testing
import TestSupport
@testable import SocketKit
@testable import TCPTrace

/// The pictures' own logic on hand-made traces: structure, escaping, the time axis, and the
/// state diagram's edges coming from `TCPStateMachine.allowed`. Browser rendering is tested in
/// EchoTests/PictureBrowserTests.
@Suite struct PictureTests {
    static func state(_ ns: UInt64, _ side: TraceSide, _ conn: Int, _ from: TCPState, _ to: TCPState,
                      _ source: ObservationSource, cause: String = "x", inStateNs: UInt64? = nil) -> TraceEvent {
        TraceEvent(timestampNs: ns, side: side, conn: conn, local: "127.0.0.1:1", peer: "127.0.0.1:2", kind: .state,
                   from: from, to: to, source: source, cause: cause, inStateNs: inStateNs)
    }

    /// A client-close run: listener, handshake, client's FIN, TIME_WAIT for 60 s, gone.
    static let run: [TraceEvent] = [
        state(1_000, .server, 0, .closed, .listen, .tcpInfo),
        state(10_000, .client, 1, .closed, .synSent, .inferred),
        state(10_000, .client, 1, .synSent, .established, .tcpInfo),
        state(20_000, .server, 1, .listen, .synReceived, .inferred),
        state(20_000, .server, 1, .synReceived, .established, .tcpInfo),
        TraceEvent(timestampNs: 30_000, side: .client, conn: 1, kind: .info, cause: "send(6 bytes)"),
        state(2_000_000, .client, 1, .established, .finWait1, .sockDiag, inStateNs: 1_990_000),
        state(2_100_000, .server, 1, .established, .closeWait, .tcpInfo),
        state(2_200_000, .client, 1, .finWait1, .finWait2, .sockDiag),
        state(3_000_000, .server, 1, .closeWait, .lastAck, .inferred),
        state(3_000_000, .server, 1, .lastAck, .closed, .sockDiag),
        state(3_100_000, .client, 1, .finWait2, .timeWait, .sockDiag),
        state(63_100_000_000, .client, 1, .timeWait, .closed, .sockDiag),
    ]

    static let segments = [
        LadderPicture.Segment(id: 1, sentNs: 9_000, receivedNs: 9_030, sender: .client, label: "SYN seq=0"),
        LadderPicture.Segment(id: 2, sentNs: 9_040, receivedNs: 9_070, sender: .server, label: "SYN+ACK seq=0 ack=1"),
        LadderPicture.Segment(id: 3, sentNs: 1_990_000, receivedNs: nil, sender: .client, label: "FIN seq=7 ack=7"),
    ]

    @Test func ladder_isWellFormedSVG_withOneGroupPerStateAndSegment() throws {
        let svg = LadderSVGRenderer().render(LadderPicture(title: "client-close", verdict: .matched("MATCHED"),
                                                           events: Self.run, segments: Self.segments))
        let xml = try #require(XMLCheck.parse(svg))
        let states = xml.elements(withClass: "state")
        #expect(states.count == Self.run.filter { $0.kind == .state }.count)
        #expect(states.filter { $0.classes.contains("inferred") }.count == Self.run.filter { $0.source == .inferred }.count)
        #expect(xml.elements(withClass: "segment").count == Self.segments.count)
        #expect(xml.elements(withClass: "lost").count == 2)   // the group and its dashed line
        #expect(xml.text.contains("SYN+ACK seq=0 ack=1") && xml.text.contains("MATCHED"))
        #expect(xml.text.contains("○ SYN_SENT") && xml.text.contains("◆ TIME_WAIT") && xml.text.contains("● ESTABLISHED"))
        // Self-contained: no script, no link, no external reference of any kind.
        #expect(xml.elements(named: "script").isEmpty && xml.elements(named: "a").isEmpty && xml.elements(named: "image").isEmpty)
        #expect(!svg.contains("href") && !svg.contains("@import") && !svg.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http"))
    }

    @Test func ladder_compressesTheTimeWaitMinute_intoOneLabelledBreak() throws {
        let svg = LadderSVGRenderer().render(LadderPicture(title: "t", events: Self.run))
        let xml = try #require(XMLCheck.parse(svg))
        #expect(xml.elements(withClass: "time-break").count == 1)
        #expect(xml.text.contains("≈ 63 s compressed"))
        let height = try #require(Double(xml.elements(named: "svg").first?.attributes["height"] ?? ""))
        #expect(height < 900, "60 s of TIME_WAIT must not become a page of empty space (height \(height))")
    }

    @Test func ladder_durations_areMeasuredBoundedOrInferred() {
        let lanes = LadderLane.lanes(for: Self.run)
        let bands = LadderBand.bands(events: Self.run, lanes: lanes)
        let client = bands.filter { lanes[$0.lane].side == .client }
        #expect(client.map(\.state) == [.synSent, .established, .finWait1, .finWait2, .timeWait, .closed])
        #expect(client[0].label.contains("inferred"))           // entered by inference: duration unknown
        #expect(client[1].durationNs == 1_990_000)              // the next event's in_state_ns
        #expect(client[4].durationNs == 63_100_000_000 - 3_100_000)
        #expect(client[5].isTerminal)
        let server = bands.filter { lanes[$0.lane].side == .server && lanes[$0.lane].conn == 1 }
        // CLOSE_WAIT was left at an unseen moment before the inferred LAST_ACK: an upper bound.
        #expect(server[2].state == .closeWait && server[2].durationIsBound && server[2].label.contains("≤"))
    }

    @Test func ladder_lanes_putListenersOutermost_andAlwaysTwoSides() throws {
        let lanes = LadderLane.lanes(for: Self.run)
        #expect(lanes.map(\.heading) == ["CLIENT #1", "SERVER #1", "SERVER #0 listener"])
        let refused = [TraceEvent(timestampNs: 1, side: .client, conn: 1, kind: .error, cause: "connect(): refused")]
        let xml = try #require(XMLCheck.parse(LadderSVGRenderer().render(LadderPicture(title: "refused", events: refused))))
        #expect(xml.text.contains("CLIENT") && xml.text.contains("SERVER") && xml.text.contains("no socket traced"))
        #expect(xml.elements(withClass: "note-error").count == 1)
    }

    @Test func hostileText_isEscaped_andCannotOpenAScript() throws {
        let hostile = "</text></svg><script>alert(1)</script> & \"quotes\" 'x' \u{1}\u{1b}[2J"
        var events = Self.run
        events[0].cause = hostile
        events[0].local = hostile
        let picture = LadderPicture(title: hostile, verdict: .differs(hostile), events: events,
                                    segments: [LadderPicture.Segment(id: 9, sentNs: 5, receivedNs: 6, sender: .client, label: hostile)])
        for document in [LadderSVGRenderer().render(picture), StateDiagramRenderer().render(title: hostile, events: events)] {
            let xml = try #require(XMLCheck.parse(document), "not well-formed")
            #expect(xml.elements(named: "script").isEmpty)
            #expect(xml.text.contains("alert(1)"))   // shown as text, not run
            #expect(!document.contains("\u{1b}") && !document.contains("\u{1}"))
        }
        let html = LadderHTMLRenderer().render(picture)
        #expect(html.components(separatedBy: "<script").count == 2, "only the page's own script")
        #expect(!html.contains("</svg><script>alert"))
    }

    @Test func html_holdsTheSVG_andEveryEventsJSON_andLoadsNothing() throws {
        let picture = LadderPicture(title: "demo", events: Self.run, segments: Self.segments)
        let html = LadderHTMLRenderer().render(picture)
        let start = try #require(html.range(of: "<svg"))
        let end = try #require(html.range(of: "</svg>"))
        #expect(XMLCheck.parse(String(html[start.lowerBound..<end.upperBound])) != nil)
        #expect(html.components(separatedBy: "<li id=\"event-").count - 1 == Self.run.count)
        #expect(html.components(separatedBy: "<li id=\"segment-").count - 1 == Self.segments.count)
        let json = SVGDocument.escape(JSONTraceRenderer.render(picture.sortedEvents[0]))
        #expect(html.contains(json))
        for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
            #expect(!html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").replacingOccurrences(of: "url(#head)", with: "")
                .contains(external), "\(external)")
        }
    }

    @Test func stateDiagram_edgesAreExactlyTheStateMachinesTable() throws {
        let svg = StateDiagramRenderer().render(title: "demo", events: Self.run)
        let xml = try #require(XMLCheck.parse(svg))
        let drawn = Set(xml.elements(withClass: "edge").map { "\($0.attributes["data-from"] ?? "")>\($0.attributes["data-to"] ?? "")" })
        let table = Set(TCPStateMachine.allowed.flatMap { from, tos in tos.map { "\(from.name)>\($0.name)" } })
        #expect(drawn == table)
        #expect(Set(StateDiagramLayout.edgeWords.keys).isSubset(of: Set(StateDiagramRenderer.edges())))
        #expect(Set(StateDiagramLayout.bends.keys).isSubset(of: Set(StateDiagramRenderer.edges())))
        // Every state has a place, so every allowed edge can be drawn.
        #expect(TCPState.all.allSatisfy { StateDiagramLayout.positions[$0] != nil })
    }

    @Test func stateDiagram_numbersThisRunsTransitions_inTimeOrder() throws {
        // Input grouped by side (as --merge reads two files): numbering follows time, not input.
        let grouped = Self.run.filter { $0.side == .server } + Self.run.filter { $0.side == .client }
        let svg = StateDiagramRenderer().render(title: "demo", events: grouped)
        let xml = try #require(XMLCheck.parse(svg))
        let steps = xml.elements(withClass: "step")
        let transitions = Self.run.filter { $0.kind == .state }
        #expect(steps.count == transitions.count)
        #expect(Set(steps.compactMap { $0.attributes["data-step"].flatMap(Int.init) }) == Set(1...transitions.count))
        #expect(steps.filter { $0.classes.contains("inferred") }.count == transitions.filter { $0.source == .inferred }.count)
        // Taken edges: one per distinct (from, to); the rest are dimmed.
        let taken = Set(transitions.map { "\($0.from!.name)>\($0.to!.name)" })
        #expect(xml.elements(withClass: "taken").count == taken.count)
        #expect(xml.text.contains("1. server #0 CLOSED → LISTEN"))
        #expect(xml.text.contains("2. client #1 CLOSED → SYN_SENT  ○ inferred"))
    }

    @Test func stateDiagram_drawsAnObservedForbiddenTransition_inRed() throws {
        var odd = Self.state(5, .client, 1, .listen, .finWait2, .tcpInfo)
        odd.unexpected = true
        let xml = try #require(XMLCheck.parse(StateDiagramRenderer().render(title: "odd", events: [odd])))
        let edge = try #require(xml.elements(withClass: "unexpected").first)
        #expect(edge.attributes["data-from"] == "LISTEN" && edge.attributes["data-to"] == "FIN_WAIT_2")
        #expect(xml.text.contains("NOT ALLOWED BY RFC 9293"))
    }

    @Test func pictureFile_formatFollowsTheExtension() {
        #expect(PictureFile.format(of: "a.svg") == .svg && PictureFile.format(of: "B.SVG") == .svg)
        #expect(PictureFile.format(of: "x/y.html") == .html && PictureFile.format(of: "y.htm") == .html)
        #expect(PictureFile.format(of: "a.png") == nil && PictureFile.format(of: "svg") == nil)
    }
}
