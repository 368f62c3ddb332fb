import Glibc
import SocketKit
import TCPTrace

/// Every file a run will write (`--trace-file`, `--picture`, `--state-diagram`, `--pcap`),
/// checked before the run starts: a run of a minute (time-wait) must not end in "cannot
/// create". A file that could not be written is exit 73 (EX_CANTCREAT) whatever the errno,
/// the code the README lists for it.
public enum OutputPaths {
    /// The output options present in `arguments`, in the order the user would read them.
    public static let options = ["--trace-file", "--picture", "--state-diagram", "--pcap"]

    /// Opens each path for writing (creating it, never truncating) and closes it again; a path
    /// that did not exist is removed, so a run that fails later leaves nothing behind.
    /// C: `open(O_WRONLY|O_CREAT)`, `unlink`.
    public static func check(_ arguments: ParsedArguments) throws {
        for option in options {
            guard let path = arguments.string(option) else { continue }
            try check(path, option: option)
        }
    }

    public static func check(_ path: String, option: String) throws {
        let existed = access(path, F_OK) == 0
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OutputFileError(option: option, path: path, errno: errno) }
        close(fd)
        if !existed { unlink(path) }
    }
}

/// An output file that cannot be created or written: one line, exit 73.
public struct OutputFileError: Error, CustomStringConvertible, ExitStatusProviding {
    public var option: String
    public var path: String
    public var errno: Int32
    public var description: String {
        // The shape of every failed call's message (the trace file's always read so).
        "open(\(ByteEscaping.escape(path))): \(Errno.message(errno)) (\(Errno.name(errno)))"
    }
    public var exitStatus: Int32 { SysExits.cantCreate }
}

/// Any failure while writing an output file after the run (the disk filled up...): exit 73.
public struct OutputWriteError: Error, CustomStringConvertible, ExitStatusProviding {
    public var underlying: any Error
    public var description: String { "\(underlying)" }
    public var exitStatus: Int32 { SysExits.cantCreate }
}
