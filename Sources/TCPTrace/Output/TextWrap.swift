/// Word wrapping for terminal output: widths count visible characters, colour codes are added
/// per word after the layout, and a line breaks only at spaces, so a state name (`CLOSE_WAIT`,
/// no spaces, at most 12 characters) is never split. Only a single word longer than a whole
/// line (a long escaped payload) is cut.
package enum TextWrap {
    package struct Word: Equatable {
        package var text: String
        /// SGR colour code (`"2"`, `"31"`), applied when colour is on.
        package var code: String?
        package init(_ text: String, _ code: String? = nil) {
            self.text = text
            self.code = code
        }
    }

    /// The words of `text` (split at spaces), all with `code`.
    package static func words(_ text: String, _ code: String? = nil) -> [Word] {
        text.split(separator: " ", omittingEmptySubsequences: true).map { Word(String($0), code) }
    }

    /// Lays `words` into lines: the first holds `first` columns, the others `rest`.
    package static func lines(_ words: [Word], first: Int, rest: Int) -> [[Word]] {
        var lines: [[Word]] = [[]]
        var used = 0
        var limit = first
        for var word in words {
            while true {
                let needed = (lines[lines.count - 1].isEmpty ? 0 : 1) + word.text.count
                if used + needed <= limit {
                    lines[lines.count - 1].append(word)
                    used += needed
                    break
                }
                if (lines[lines.count - 1].isEmpty && limit > 0) || word.text.count > rest {
                    // Longer than any line: cut it where this line ends (never a state name).
                    let room = max(limit - used - (lines[lines.count - 1].isEmpty ? 0 : 1), 1)
                    if limit > 0, word.text.count > room, lines[lines.count - 1].isEmpty || room >= 8 {
                        lines[lines.count - 1].append(Word(String(word.text.prefix(room)), word.code))
                        word.text = String(word.text.dropFirst(room))
                    }
                }
                lines.append([])
                used = 0
                limit = max(rest, 1)
            }
        }
        return lines.filter { !$0.isEmpty }
    }

    /// One laid-out line as text, each word painted when `color` is on.
    package static func join(_ line: [Word], color: Bool) -> String {
        line.map { word in
            guard color, let code = word.code else { return word.text }
            return "\u{1b}[\(code)m\(word.text)\u{1b}[0m"
        }.joined(separator: " ")
    }

    /// `first` (already formatted, `firstColumns` visible wide) followed by `words`, wrapped to
    /// `width`; continuation lines start with `indent` spaces.
    package static func fit(_ first: String, firstColumns: Int, words: [Word], width: Int, indent: Int, color: Bool,
                            minimumRoom: Int = 16) -> String {
        // Too little room beside the head for a readable start: begin on the next line.
        var room = width - firstColumns - 1
        if room < minimumRoom { room = 0 }
        let laid = lines(words, first: room, rest: width - indent)
        var out = first
        for (index, line) in laid.enumerated() {
            if index == 0 && room > 0 && !line.isEmpty {
                out += " " + join(line, color: color)
            } else {
                out += "\n" + String(repeating: " ", count: indent) + join(line, color: color)
            }
        }
        return out
    }

    /// Plain prose wrapped to `width` at spaces, each paragraph (line of `text`) on its own;
    /// continuation lines indented by `indent` more than the line's own leading spaces (a
    /// hanging indent).
    package static func paragraph(_ text: String, width: Int, indent: Int = 0) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let lead = line.prefix { $0 == " " }.count
            let hang = String(repeating: " ", count: lead + indent)
            let laid = lines(words(String(line)), first: width - lead, rest: max(width - lead - indent, 8))
            guard !laid.isEmpty else { return "" }
            return laid.enumerated().map { (index, words) in
                (index == 0 ? String(repeating: " ", count: lead) : hang) + join(words, color: false)
            }.joined(separator: "\n")
        }.joined(separator: "\n")
    }
}
