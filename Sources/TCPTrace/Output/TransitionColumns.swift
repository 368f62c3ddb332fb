import SocketKit

/// The text line's `  SYN_RECEIVED → ESTABLISHED ` columns for every pair of known states (and
/// a missing `from`, printed `—`), rendered once and copied: padding two names and the arrow
/// was ~400 instructions a line, five lines a connection (callgrind, traced server under
/// connect churn). Uncoloured lines only; an unknown kernel state takes the renderer's own path.
/// Each entry is built by that path (`appendTransition`; TraceRendererTests compare all of them).
enum TransitionColumns {
    /// Bytes per entry: a length byte, then at most 12 + 5 + 12 bytes (the longest name is 12
    /// columns; the arrow is 3 bytes of UTF-8, `—` too).
    private static let stride = 32
    /// `from` rows: the 11 states by `caseCode`, then row 11 for no `from`.
    private static let rows = 12
    private static let columns = 11

    /// Written once, read only after: immutable shared data.
    nonisolated(unsafe) private static let table: UnsafePointer<UInt8> = {
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: rows * columns * stride)
        for row in 0..<rows {
            for column in 0..<columns {
                // Rendered by the renderer's own path: the columns are spelled in one place.
                var event = TraceEvent(timestampNs: 0, side: .server, conn: 0, kind: .state, cause: "")
                event.from = row < TCPState.all.count ? TCPState.all[row] : nil
                event.to = TCPState.all[column]
                var bytes = TraceBytes(capacity: stride)
                TextTraceRenderer(baseNs: 0, color: false).appendTransition(event, into: &bytes)
                let entry = table + (row * columns + column) * stride
                bytes.withUnsafeBytes { raw in
                    precondition(raw.count < stride, "a transition column outgrew its entry")
                    entry[0] = UInt8(raw.count)
                    if let base = raw.baseAddress { (entry + 1).initialize(from: base.assumingMemoryBound(to: UInt8.self), count: raw.count) }
                }
            }
        }
        return UnsafePointer(table)
    }()

    /// Appends the columns of `from → to` and returns true; false (nothing written) for a state
    /// outside the table.
    @inline(__always)
    static func append(from: TCPState?, to: TCPState, into out: inout TraceBytes) -> Bool {
        let row = from.map { Int($0.caseCode) } ?? rows - 1
        let column = Int(to.caseCode)
        guard row < rows, column < columns else { return false }
        let entry = table + (row * columns + column) * stride
        out.append(UnsafeBufferPointer(start: entry + 1, count: Int(entry[0])))
        return true
    }
}
