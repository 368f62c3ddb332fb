import SocketKit

/// A minimal SVG/XML writer: elements with attributes, text always escaped.
///
/// Text in the pictures comes from trace causes, addresses and files given to `--merge`:
/// everything goes through `escape`, so no input can close a tag, open a script, or make
/// the file ill-formed XML.
struct SVGDocument {
    private(set) var body = ""

    /// XML 1.0 text and attribute escaping. Characters XML forbids outright (C0 controls other
    /// than tab/newline/CR, lone surrogates cannot occur in a Swift String) become U+FFFD.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// Coordinates with at most one decimal: short files, stable output for tests.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let tenths = Int((value * 10).rounded())
        let whole = String(abs(tenths) / 10), sign = tenths < 0 ? "-" : ""
        return tenths % 10 == 0 ? sign + whole : sign + whole + "." + String(abs(tenths) % 10)
    }

    mutating func open(_ name: String, _ attributes: [(String, String)] = []) {
        body += "<" + name + Self.attributes(attributes) + ">"
    }

    mutating func close(_ name: String) { body += "</" + name + ">\n" }

    /// `<name attrs/>`, or `<name attrs>text</name>` when text is given.
    mutating func element(_ name: String, _ attributes: [(String, String)], text: String? = nil, tooltip: String? = nil) {
        if text == nil && tooltip == nil {
            body += "<" + name + Self.attributes(attributes) + "/>\n"
            return
        }
        body += "<" + name + Self.attributes(attributes) + ">"
        if let tooltip { body += "<title>" + Self.escape(tooltip) + "</title>" }
        if let text { body += Self.escape(text) }
        body += "</" + name + ">\n"
    }

    mutating func raw(_ markup: String) { body += markup }

    static func attributes(_ list: [(String, String)]) -> String {
        list.map { " " + $0.0 + "=\"" + escape($0.1) + "\"" }.joined()
    }
}
