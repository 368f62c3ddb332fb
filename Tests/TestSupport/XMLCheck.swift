import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Parses a document with libxml2 (through Foundation's XMLParser: a parser nobody here
/// wrote) and keeps what the picture tests count: elements, their `class` words and texts.
public final class XMLCheck: NSObject, XMLParserDelegate, @unchecked Sendable {
    public struct Element {
        public var name: String
        public var attributes: [String: String]
        public var classes: Set<String> { Set((attributes["class"] ?? "").split(separator: " ").map(String.init)) }
    }

    public private(set) var elements: [Element] = []
    public private(set) var text = ""
    public private(set) var error: String?

    /// nil when `document` is not well-formed XML (the parser's message is in `error`).
    public static func parse(_ document: String) -> XMLCheck? {
        let check = XMLCheck()
        let parser = XMLParser(data: Data(document.utf8))
        parser.delegate = check
        guard parser.parse() else {
            check.error = parser.parserError.map { "\($0)" } ?? "unknown XML error"
            return nil
        }
        return check
    }

    public func elements(withClass word: String) -> [Element] { elements.filter { $0.classes.contains(word) } }
    public func elements(named name: String) -> [Element] { elements.filter { $0.name == name } }

    public func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                       qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        elements.append(Element(name: elementName, attributes: attributeDict))
    }

    public func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
}
