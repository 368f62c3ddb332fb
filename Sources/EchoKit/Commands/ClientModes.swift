import SocketKit
import TCPTrace

/// The client's modes are exclusive: `--demo`, `--scenario`, `--merge` and `--load` each run
/// something different, and a second one would be silently ignored. Words after the options
/// are messages (the echo mode) or files (`--merge`); any other mode refuses them.
public enum ClientModes {
    public static func check(_ arguments: ParsedArguments) throws {
        var modes = ["--demo", "--merge", "--load"].filter(arguments.has)
        if arguments.string("--scenario") != nil { modes.insert("--scenario", at: min(1, modes.count)) }
        if modes.count > 1 {
            throw UsageError("\(modes.joined(separator: " and ")) are separate modes: give one of them")
        }
        if let mode = modes.first, mode != "--merge", let word = arguments.positionals.first {
            throw UsageError("unexpected argument '\(ByteEscaping.escape(word))': \(mode) takes no messages")
        }
    }
}
