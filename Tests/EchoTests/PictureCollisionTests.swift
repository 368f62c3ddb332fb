import Foundation
import Glibc
import SocketKit
import TCPTrace
import TestSupport
import Testing

/// Issue 22 item 5: in Chromium, no text box of a picture intersects another text box, a
/// badge, another lane's band or an arrow (getBBox over the DOM, scripts/picture-collisions.js);
/// the HTML page fits a 1280 px window; an inferred band never starts above its cause's arrow.
@Suite("Pictures without collisions", .enabled(if: Chromium.path != nil, "needs chromium-headless-shell"))
struct PictureCollisionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Finding: Decodable { var kind: String; var a: String; var b: String }
    struct Report: Decodable { var texts: Int; var collisions: [Finding] }

    /// The picture inlined in a page with the collision script; Chromium runs it and the DOM
    /// dump carries its findings.
    static func collisions(inSVG svg: String) throws -> Report {
        let script = try String(contentsOf: root.appendingPathComponent("scripts/picture-collisions.js"), encoding: .utf8)
        let page = FileManager.default.temporaryDirectory.appendingPathComponent("sk-collisions-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).html")
        defer { try? FileManager.default.removeItem(at: page) }
        try ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>" + svg + "<script>" + script + "</script></body></html>")
            .write(to: page, atomically: true, encoding: .utf8)
        let dom = try Chromium.dumpDOM(page)
        let json = try #require(dom.range(of: "<pre id=\"collisions\">").flatMap { start in
            dom.range(of: "</pre>", range: start.upperBound..<dom.endIndex).map { String(dom[start.upperBound..<$0.lowerBound]) }
        }, "the collision script did not run")
        let unescaped = json.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
            .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
        return try JSONDecoder().decode(Report.self, from: Data(unescaped.utf8))
    }

    static var gallery: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("docs/gallery").path)) ?? [])
            .filter { $0.hasSuffix(".svg") }.sorted()
    }

    @Test("every gallery picture: 0 collisions", arguments: gallery)
    func galleryPicture(_ name: String) throws {
        let svg = try String(contentsOf: Self.root.appendingPathComponent("docs/gallery/" + name), encoding: .utf8)
        let report = try Self.collisions(inSVG: svg)
        #expect(report.texts > 10)
        #expect(report.collisions.isEmpty, "\(name): \(report.collisions.map { "\($0.kind): \($0.a) × \($0.b)" })")
    }

    @Test("pictures drawn now: 0 collisions, the HTML fits 1280 px, inferred bands start at their segment",
          arguments: [["--demo", "--kernel-trace", "off"],
                      ["--scenario", "client-close", "--kernel-trace", "off"],
                      ["--scenario", "simultaneous-close", "--kernel-trace", "off"],
                      ["--scenario", "backlog-full", "--kernel-trace", "off", "--slow-motion", "off"]])
    func drawnNow(_ arguments: [String]) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sk-pictures-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let svgURL = dir.appendingPathComponent("ladder.svg"), states = dir.appendingPathComponent("states.svg")
        let htmlURL = dir.appendingPathComponent("ladder.html")
        let child = try ChildProcess("EchoClient", arguments + ["--trace", "off", "--picture", svgURL.path, "--state-diagram", states.path])
        #expect(child.wait(timeout: 60) <= 1, "\(child.stderrText)")
        for url in [svgURL, states] {
            let report = try Self.collisions(inSVG: try String(contentsOf: url, encoding: .utf8))
            #expect(report.collisions.isEmpty, "\(arguments) \(url.lastPathComponent): \(report.collisions.map { "\($0.kind): \($0.a) × \($0.b)" })")
        }
        // An inferred band caused by a captured segment starts no higher than that segment's arrow.
        let svg = try String(contentsOf: svgURL, encoding: .utf8)
        for (segment, bandTop) in Self.causedBands(svg) {
            let arrowY = try #require(Self.arrowY(svg, id: segment), "segment #\(segment) drawn")
            #expect(bandTop >= arrowY - 0.1, "band caused by #\(segment) starts at \(bandTop), its arrow at \(arrowY)")
        }
        // The HTML page in a 1280 px window: nothing to scroll sideways.
        let html = try ChildProcess("EchoClient", arguments + ["--trace", "off", "--picture", htmlURL.path])
        #expect(html.wait(timeout: 60) <= 1)
        var page = try String(contentsOf: htmlURL, encoding: .utf8)
        page = page.replacingOccurrences(of: "</body>", with: "<script>document.body.setAttribute('data-overflow', "
            + "String(document.documentElement.scrollWidth - window.innerWidth));</script></body>")
        try page.write(to: htmlURL, atomically: true, encoding: .utf8)
        let dom = try Chromium.run(["--window-size=1280,900", "--dump-dom", htmlURL.absoluteString]).stdoutText
        let overflow = dom.range(of: "data-overflow=\"").map { dom[$0.upperBound...].prefix { $0 != "\"" } }.flatMap { Int($0) }
        #expect(overflow != nil && overflow! <= 0, "the page is \(overflow ?? -1) px wider than a 1280 px window")
    }

    /// (segment id, band top y) for each band that names the segment that caused it.
    static func causedBands(_ svg: String) -> [(Int, Double)] {
        svg.components(separatedBy: "<g class=\"state band-group").dropFirst().compactMap { group in
            guard let id = attribute(group, "data-caused-by").flatMap(Int.init),
                  let rect = group.range(of: "<rect class=\"band"),
                  let y = attribute(String(group[rect.lowerBound...]), "y").flatMap(Double.init) else { return nil }
            return (id, y)
        }
    }

    static func arrowY(_ svg: String, id: Int) -> Double? {
        guard let group = svg.components(separatedBy: "<g class=\"segment").dropFirst().first(where: { attribute($0, "data-id") == String(id) }),
              let line = group.range(of: "<line") else { return nil }
        return attribute(String(group[line.lowerBound...]), "y1").flatMap(Double.init)
    }

    static func attribute(_ text: String, _ name: String) -> String? {
        guard let start = text.range(of: " " + name + "=\"") else { return nil }
        return String(text[start.upperBound...].prefix { $0 != "\"" })
    }
}
