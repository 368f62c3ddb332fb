import SocketKit
import TCPTrace

/// `--picture FILE` (.svg or .html) and `--state-diagram FILE.svg`, shared by `--demo`,
/// `--scenario` and `--merge`. The names are part of the interface: other tools call them.
public struct PictureOptions: Sendable {
    public var picturePath: String?
    public var diagramPath: String?

    public static let specs = [
        OptionSpec("--picture", value: "FILE", help: "also draw the ladder into FILE: .svg, or .html with hover details (--demo, --scenario, --merge)"),
        OptionSpec("--state-diagram", value: "FILE.svg", help: "also draw RFC 9293's state diagram with this run's transitions numbered"),
    ]

    /// Checks the extensions before anything runs: a wrong name is a usage error, not a lost run.
    public static func options(_ arguments: ParsedArguments) throws -> PictureOptions {
        let picture = arguments.string("--picture"), diagram = arguments.string("--state-diagram")
        if let picture, PictureFile.format(of: picture) == nil {
            throw UsageError("--picture: '\(ByteEscaping.escape(picture))' must end in .svg or .html")
        }
        if let diagram, PictureFile.format(of: diagram) != .svg {
            throw UsageError("--state-diagram: '\(ByteEscaping.escape(diagram))' must end in .svg")
        }
        return PictureOptions(picturePath: picture, diagramPath: diagram)
    }

    public var isEmpty: Bool { picturePath == nil && diagramPath == nil }

    /// Writes what was asked for; returns one line per file written, for the caller to print.
    public func write(_ picture: LadderPicture) throws -> [String] {
        var written: [String] = []
        do {
            try writeFiles(picture, into: &written)
        } catch {
            throw OutputWriteError(underlying: error)
        }
        return written
    }

    private func writeFiles(_ picture: LadderPicture, into written: inout [String]) throws {
        if let path = picturePath {
            try PictureFile.writeLadder(picture, to: path)
            written.append("picture written to \(ByteEscaping.escape(path))")
        }
        if let path = diagramPath {
            try PictureFile.writeStateDiagram(title: picture.title, events: picture.events, to: path)
            written.append("state diagram written to \(ByteEscaping.escape(path))")
        }
    }
}
