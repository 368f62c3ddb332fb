import Glibc
import SocketKit
import TCPTrace

/// A bad command line: printed as one line on stderr, exit 64 (EX_USAGE).
public struct UsageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One option of a command: `--port N` (with a value) or `--demo` (a flag).
public struct OptionSpec: Sendable {
    public let name: String
    public let short: String?
    public let valueName: String?
    public let help: String

    public init(_ name: String, short: String? = nil, value: String? = nil, help: String) {
        self.name = name
        self.short = short
        valueName = value
        self.help = help
    }
}

/// The parsed command line, with typed accessors that throw `UsageError` for bad values.
public struct ParsedArguments: Sendable {
    public var values: [String: String] = [:]
    public var flags: Set<String> = []
    public var positionals: [String] = []
    /// Every value of a repeatable option (`--port 80 --port 443`), in order.
    public var valueLists: [String: [String]] = [:]

    public func has(_ flag: String) -> Bool { flags.contains(flag) }
    public func string(_ name: String) -> String? { values[name] }

    public func port(_ name: String = "--port", default fallback: UInt16) throws -> UInt16 {
        guard let text = values[name] else { return fallback }
        guard let value = UInt16(text) else {
            throw UsageError("\(name): '\(ByteEscaping.escape(text))' is not a port number (0-65535)")
        }
        return value
    }

    public func integer(_ name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError("\(name): '\(ByteEscaping.escape(text))' is not a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    public func seconds(_ name: String) throws -> Double? {
        guard let text = values[name] else { return nil }
        guard let value = Double(text), value.isFinite, value >= 0, value <= 86_400 * 365 else {
            throw UsageError("\(name): '\(ByteEscaping.escape(text))' is not a number of seconds")
        }
        return value
    }

    public func choice<T: RawRepresentable & CaseIterable>(_ name: String, default fallback: T) throws -> T where T.RawValue == String {
        guard let text = values[name] else { return fallback }
        guard let value = T(rawValue: text) else {
            let names = T.allCases.map(\.rawValue).joined(separator: "|")
            throw UsageError("\(name): '\(ByteEscaping.escape(text))' is not one of \(names)")
        }
        return value
    }
}

/// Parses `--name value`, `--name=value`, flags, `-h`, and `--` like swift-argument-parser.
public struct ArgumentScanner: Sendable {
    public let command: String
    public let options: [OptionSpec]
    public let allowsPositionals: Bool

    public init(command: String, options: [OptionSpec], allowsPositionals: Bool) {
        self.command = command
        self.options = options
        self.allowsPositionals = allowsPositionals
    }

    public func parse<C: Collection>(_ arguments: C) throws -> ParsedArguments where C.Element == String {
        var result = ParsedArguments()
        var iterator = arguments.makeIterator()
        var onlyPositionals = false
        while let argument = iterator.next() {
            if onlyPositionals || !argument.hasPrefix("-") || argument == "-" {
                guard allowsPositionals else {
                    throw UsageError("unexpected argument '\(ByteEscaping.escape(argument))'")
                }
                result.positionals.append(argument)
                continue
            }
            if argument == "--" { onlyPositionals = true; continue }
            var name = argument
            var inlineValue: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            guard let spec = options.first(where: { $0.name == name || $0.short == name }) else {
                throw UsageError("unknown option '\(ByteEscaping.escape(name))'")
            }
            if spec.valueName != nil {
                guard let value = inlineValue ?? iterator.next() else {
                    throw UsageError("option '\(spec.name)' needs a value (\(spec.valueName!))")
                }
                result.values[spec.name] = value
                result.valueLists[spec.name, default: []].append(value)
            } else {
                if inlineValue != nil { throw UsageError("option '\(spec.name)' takes no value") }
                result.flags.insert(spec.name)
            }
        }
        return result
    }

    /// The `--help` text, wrapped at spaces to `width` with hanging indents: the usage at
    /// its bracket groups, each option's description in a column (on the next line when the
    /// option itself is too wide), the footer's paragraphs.
    public func help(summary: String, usage: String, footer: String = "", width: Int = 80) -> String {
        let width = max(width, 40)
        var text = TextWrap.paragraph(summary, width: width) + "\n\n"
        for (index, line) in usage.split(separator: "\n").enumerated() {
            let head = index == 0 ? "USAGE: " : "       "
            let body = line.drop { $0 == " " }
            text += head + TextWrap.lines(Self.groups(String(body)), first: width - head.count, rest: width - 9)
                .map { TextWrap.join($0, color: false) }.joined(separator: "\n         ") + "\n"
        }
        text += "\nOPTIONS:\n"
        let column = width >= 100 ? 34 : 30
        for option in options {
            var left = option.short.map { "\($0), " } ?? ""
            left += option.name + (option.valueName.map { " <\($0)>" } ?? "")
            let words = TextWrap.words(option.help)
            if left.count > column - 3 {
                text += "  " + left + "\n" + String(repeating: " ", count: column + 1)
                    + TextWrap.lines(words, first: width - column - 1, rest: width - column - 1).map { TextWrap.join($0, color: false) }
                    .joined(separator: "\n" + String(repeating: " ", count: column + 1)) + "\n"
            } else {
                text += TextWrap.fit("  " + left.padding(to: column - 2), firstColumns: column, words: words, width: width,
                                     indent: column + 1, color: false, minimumRoom: 1) + "\n"
            }
        }
        return text + (footer.isEmpty ? "" : "\n" + TextWrap.paragraph(footer, width: width, indent: 2) + "\n")
    }

    /// A usage line's words, a bracket group (`[--trace text|json|off]`) kept as one.
    static func groups(_ usage: String) -> [TextWrap.Word] {
        var out: [TextWrap.Word] = []
        var current = ""
        var depth = 0
        for word in usage.split(separator: " ") {
            current += (current.isEmpty ? "" : " ") + word
            depth += word.filter { $0 == "[" }.count - word.filter { $0 == "]" }.count
            if depth <= 0 { out.append(TextWrap.Word(current)); current = ""; depth = 0 }
        }
        if !current.isEmpty { out.append(TextWrap.Word(current)) }
        return out
    }

    /// The width `--help` wraps to: the terminal on stdout, else `$COLUMNS`, else 80 (piped
    /// help still fits a terminal's default).
    public static func helpWidth() -> Int {
        TerminalWidth.columns(fd: 1) ?? TerminalWidth.resolve(columnsVariable: getenv("COLUMNS").map { String(cString: $0) }, reported: 0)
    }
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

extension OptionSpec {
    /// The trace options both executables share (read by `CommandLineTrace.options`).
    public static func traceOptions(verboseHelp: String) -> [OptionSpec] {
        [
            OptionSpec("--trace", value: "text|json|off", help: "state trace format on stderr (default text; off = no state reads at all)"),
            OptionSpec("--trace-file", value: "PATH", help: "write the trace to PATH instead of stderr"),
            OptionSpec("--trace-verbose", help: verboseHelp),
            OptionSpec("--no-color", help: "never color the text trace (also: NO_COLOR, or not a terminal)"),
            OptionSpec("--kernel-trace", value: "auto|on|off",
                       help: "states from the kernel tracepoint (root/CAP_PERFMON): auto (default) falls back, on fails without"),
        ]
    }

    /// `--version` and `--help`, last in every command's list.
    public static let standardOptions = [
        OptionSpec("--version", help: "print the version"),
        OptionSpec("--help", short: "-h", help: "show this help"),
    ]
}

extension ArgumentScanner {
    /// Parses the process's arguments the way swift-argument-parser does: a usage error is one
    /// line on stderr and exit 64; `--help` prints the help on stdout and `--version` the
    /// version, both exit 0. Returns the arguments otherwise.
    public func parseCommandLineOrExit(summary: String, usage: String, footer: String) -> ParsedArguments {
        let arguments: ParsedArguments
        do {
            arguments = try parse(CommandLine.arguments.dropFirst())
        } catch {
            SysExits.fail(command, "\(error) (see '\(command) --help')", code: SysExits.usage)
        }
        if arguments.has("--help") {
            print(help(summary: summary, usage: usage, footer: footer, width: Self.helpWidth()), terminator: "")
            exit(0)
        }
        if arguments.has("--version") {
            print("\(command) \(SocketKitVersion.current)")
            exit(0)
        }
        return arguments
    }
}
