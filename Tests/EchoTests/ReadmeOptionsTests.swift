import Foundation
import Testing
import TestSupport

/// Every option either executable's `--help` shows is documented in the README (issue 19,
/// item 9): a new option cannot ship with only its help line.
@Suite struct ReadmeOptionsTests {
    static let readme: String = {
        // Tests/EchoTests/ReadmeOptionsTests.swift → the repository root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)) ?? ""
    }()

    /// The long options (`--name`) in a help text, in order, each once.
    static func options(in help: String) -> [String] {
        var seen: [String] = []
        let characters = Array(help)
        var index = 0
        while index + 2 < characters.count {
            let starts = characters[index] == "-" && characters[index + 1] == "-" && characters[index + 2].isLetter
                && (index == 0 || !(characters[index - 1].isLetter || characters[index - 1] == "-"))
            guard starts else { index += 1; continue }
            var end = index + 2
            while end < characters.count, characters[end].isLetter || characters[end].isNumber || characters[end] == "-" { end += 1 }
            let option = String(characters[index..<end])
            if !seen.contains(option) { seen.append(option) }
            index = end
        }
        return seen
    }

    /// `option` appears in the README as a whole option (`--merge` does not count for `--merge-all`).
    static func documented(_ option: String) -> Bool {
        var search = readme[...]
        while let range = search.range(of: option) {
            let next = range.upperBound < search.endIndex ? search[range.upperBound] : " "
            if !(next.isLetter || next.isNumber || next == "-") { return true }
            search = search[range.upperBound...]
        }
        return false
    }

    @Test("every option in --help appears in README.md", arguments: ["EchoServer", "EchoClient"])
    func helpOptionsAreInTheReadme(executable: String) throws {
        try #require(!Self.readme.isEmpty, "README.md not found next to Tests/")
        let child = try ChildProcess(executable, ["--help"])
        #expect(child.wait(timeout: 20) == 0, "\(executable) --help: \(child.stderrText)")
        let help = child.stdoutText + child.stderrText
        let options = Self.options(in: help)
        #expect(options.count >= 10, "too few options found in \(executable) --help: \(options)")
        let missing = options.filter { !Self.documented($0) }
        #expect(missing.isEmpty, "\(executable) --help shows \(missing) but README.md never mentions them")
    }

    @Test func optionScanner_findsWholeOptionsOnly() {
        #expect(Self.options(in: "USAGE: x [--merge [--merge-all] FILE] a--b --port <N>, -p") == ["--merge", "--merge-all", "--port"])
    }
}
