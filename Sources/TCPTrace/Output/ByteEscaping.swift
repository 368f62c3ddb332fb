import SocketKit

/// Makes bytes from the network safe for a terminal: printable ASCII passes, everything else
/// (control characters, ESC sequences, NULs, invalid UTF-8, non-ASCII) becomes `\xNN`, `\n`...
/// so a peer can never move the cursor, recolor or retitle the user's terminal.
public enum ByteEscaping {
    public static func escape<S: Sequence>(_ bytes: S, limit: Int = .max) -> String where S.Element == UInt8 {
        var out = ""
        var count = 0
        for byte in bytes {
            if count == limit { out += "…"; break }
            count += 1
            switch byte {
            case UInt8(ascii: "\\"): out += "\\\\"
            case UInt8(ascii: "\n"): out += "\\n"
            case UInt8(ascii: "\r"): out += "\\r"
            case UInt8(ascii: "\t"): out += "\\t"
            case 0x20...0x7e: out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789abcdef")
                out += "\\x" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0xf)])
            }
        }
        return out
    }

    /// Like `escape`, but a newline byte stays a real line break, so a reply made of text lines
    /// still reads as lines (`--expect any` prints what came back this way). A newline cannot
    /// move the cursor anywhere a terminal's user did not expect; everything else is escaped.
    public static func escapeKeepingLines<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out = ""
        var line: [UInt8] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                out += escape(line) + "\n"
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(byte)
            }
        }
        return out + escape(line)
    }

    /// Escapes a string (for JSON values) so only printable ASCII, \n etc. remain.
    public static func escape(_ text: String) -> String { escape(Array(text.utf8)) }
}
