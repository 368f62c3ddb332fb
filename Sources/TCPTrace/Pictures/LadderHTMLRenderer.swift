import SocketKit

/// The ladder SVG inside one HTML page, with every event's full JSON: hovering (or focusing)
/// a state, note or segment shows its record in the side panel. Inline CSS and one inline
/// script only; the page loads nothing from anywhere.
public struct LadderHTMLRenderer {
    public init() {}

    public func render(_ picture: LadderPicture) -> String {
        let events = picture.sortedEvents
        let svg = LadderSVGRenderer().render(picture)
        var html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        html += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        html += "<title>" + SVGDocument.escape(picture.title) + "</title>\n<style>\n" + Self.css + "</style></head>\n<body>\n"
        html += "<main><div class=\"picture\">" + svg + "</div>\n"
        html += "<aside><h2>Details</h2><p class=\"hint\">Hover a state, note or segment to see its record.</p>"
        html += "<pre id=\"detail\">(nothing selected)</pre></aside></main>\n"
        // The same records as a plain list: readable with scripts off, and searchable.
        html += "<section><h2>Every event (JSON Lines, as --trace json prints them)</h2>\n<ol class=\"records\">\n"
        for (index, event) in events.enumerated() {
            html += "<li id=\"event-\(index)\" data-event=\"\(index)\"><code>" + SVGDocument.escape(JSONTraceRenderer.render(event)) + "</code></li>\n"
        }
        html += "</ol>\n"
        if !picture.segments.isEmpty {
            html += "<h2>Segments</h2>\n<ol class=\"segments\">\n"
            for (index, segment) in picture.segments.enumerated() {
                html += "<li id=\"segment-\(index)\" data-segment=\"\(index)\"><code>" + SVGDocument.escape(Self.describe(segment)) + "</code></li>\n"
            }
            html += "</ol>\n"
        }
        html += "</section>\n<script>\n" + Self.script + "</script>\n</body></html>\n"
        return html
    }

    static func describe(_ segment: LadderPicture.Segment) -> String {
        var text = "\(segment.sender.rawValue) → \(segment.sender == .client ? "server" : "client"): \(segment.label)"
        if let received = segment.receivedNs, received >= segment.sentNs {
            text += " (travel \(TextTraceRenderer.duration(received - segment.sentNs)))"
        } else {
            text += " (not seen arriving)"
        }
        if let detail = segment.detail { text += "; " + detail }
        return text
    }

    static let css = """
        body{font-family:DejaVu Sans,Verdana,Arial,sans-serif;margin:16px;color:#111827}
        main{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
        .picture{flex:1 1 auto;min-width:0;max-width:100%}.picture svg{max-width:100%;height:auto;display:block}
        aside{position:sticky;top:8px;width:360px;flex:0 0 360px}pre{white-space:pre-wrap;word-break:break-all;
        background:#f3f4f6;padding:8px;font-size:12px;border-radius:6px}.hint{color:#6b7280;font-size:13px}
        [data-event],[data-segment]{cursor:pointer}.selected rect,.selected line{stroke-width:3}
        ol.records code,ol.segments code{font-size:11px;word-break:break-all}h2{font-size:16px}

        """

    /// Reads the records from the list (no second copy of the data), pretty-prints on hover.
    static let script = """
        "use strict";
        (function () {
          var detail = document.getElementById("detail");
          function show(el) {
            var ev = el.getAttribute("data-event"), seg = el.getAttribute("data-segment");
            var item = ev !== null ? document.getElementById("event-" + ev) : document.getElementById("segment-" + seg);
            if (!item) { return; }
            var text = item.textContent;
            try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { }
            detail.textContent = text;
            var old = document.querySelectorAll(".selected");
            for (var i = 0; i < old.length; i++) { old[i].classList.remove("selected"); }
            el.classList.add("selected");
          }
          var targets = document.querySelectorAll("svg [data-event], svg [data-segment]");
          for (var i = 0; i < targets.length; i++) {
            targets[i].setAttribute("tabindex", "0");
            targets[i].addEventListener("mouseenter", function (e) { show(e.currentTarget); });
            targets[i].addEventListener("focus", function (e) { show(e.currentTarget); });
          }
          document.body.setAttribute("data-ready", String(targets.length));
        })();

        """
}
