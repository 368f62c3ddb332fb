import SocketKit

/// Writes a picture to the file named by `--picture` / `--state-diagram`; the extension picks
/// the format.
public enum PictureFile {
    public enum Format: Sendable, Equatable {
        case svg, html
    }

    /// `.svg` or `.html`/`.htm` (any case); nil for anything else.
    public static func format(of path: String) -> Format? {
        let lower = path.lowercased()
        if lower.hasSuffix(".svg") { return .svg }
        if lower.hasSuffix(".html") || lower.hasSuffix(".htm") { return .html }
        return nil
    }

    /// The ladder, as SVG or HTML by the file's extension. C: `open`, `write`.
    public static func writeLadder(_ picture: LadderPicture, to path: String) throws {
        switch format(of: path) {
        case .svg?: try TextFile.write(path, LadderSVGRenderer().render(picture))
        case .html?: try TextFile.write(path, LadderHTMLRenderer().render(picture))
        case nil: throw PictureFileError(path: path, expected: ".svg or .html")
        }
    }

    /// The state diagram (SVG only: it is one picture with nothing to hover).
    public static func writeStateDiagram(title: String, events: [TraceEvent], to path: String) throws {
        guard format(of: path) == .svg else { throw PictureFileError(path: path, expected: ".svg") }
        try TextFile.write(path, StateDiagramRenderer().render(title: title, events: events))
    }
}

/// A picture file name whose extension says no format we write.
public struct PictureFileError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var expected: String
    public var description: String { "'\(ByteEscaping.escape(path))': the file name must end in \(expected)" }
}
