import Glibc

/// How wide the terminal on a descriptor is, for output that should fit it.
public enum TerminalWidth {
    /// Columns of the terminal on `fd`; nil when `fd` is not a terminal (a pipe or a file keeps
    /// full lines). `COLUMNS` wins when set to a number (the shell's own idea, and a way to
    /// override); then the kernel's window size; a terminal that reports 0 counts as 80.
    /// C: `isatty`, `ioctl(TIOCGWINSZ)`.
    public static func columns(fd: Int32) -> Int? {
        guard isatty(fd) == 1 else { return nil }
        var size = winsize()
        let reported = ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 ? Int(size.ws_col) : 0
        return resolve(columnsVariable: getenv("COLUMNS").map { String(cString: $0) }, reported: reported)
    }

    /// The rule behind `columns(fd:)`, without the terminal: `COLUMNS` if it is a positive
    /// number, else the reported width if positive, else 80.
    public static func resolve(columnsVariable: String?, reported: Int) -> Int {
        if let text = columnsVariable, let value = Int(text), value > 0 { return value }
        return reported > 0 ? reported : 80
    }
}
