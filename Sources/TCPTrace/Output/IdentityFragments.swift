/// The part of a trace line that every event of one socket repeats, rendered once and copied
/// after: JSON's `,"side":…,"pid":…,"conn":…,"local":…,"peer":…,"cookie":…` members, the text
/// line's `server #17  127.0.0.1:7007 ⇄ 127.0.0.1:53422` columns. Rendering them was ~1,000
/// instructions a JSON event (six keys, two escaped strings, three numbers) and ~500 a text
/// one, five events a connection (callgrind, traced server under connect churn); a copy is a
/// few comparisons and one memcpy.
///
/// Direct-mapped by connection id: the sockets a writer sees at one time are few and their ids
/// consecutive, so neighbours do not evict each other. A slot is used only when every field
/// the fragment shows is equal (strings by value, which for the tracker's own strings is a
/// pointer comparison), so a reused id or a changed address renders afresh: the output is the
/// same bytes as without the cache (TraceRendererTests compare both paths).
///
/// Not thread-safe: the trace writer keeps one under its lock.
package struct IdentityFragments {
    private struct Slot {
        var valid = false
        var side = TraceSide.server
        var pid: Int32 = 0
        var conn = 0
        var cookie: UInt64?
        var local: String?
        var peer: String?
        var bytes: [UInt8] = []
    }

    private var slots: [Slot]
    private let mask: Int

    /// `slotCount`: a power of two.
    package init(slotCount: Int = 64) {
        precondition(slotCount > 0 && slotCount & (slotCount - 1) == 0, "slotCount must be a power of two")
        slots = Array(repeating: Slot(), count: slotCount)
        mask = slotCount - 1
    }

    /// Appends the fragment remembered for `e`'s socket and returns true, or returns false:
    /// then the caller renders it and calls `remember`.
    package mutating func appendRemembered(for e: TraceEvent, into out: inout TraceBytes) -> Bool {
        let index = e.conn & mask
        guard slots[index].valid, slots[index].conn == e.conn, slots[index].side == e.side,
              slots[index].pid == e.pid, slots[index].cookie == e.cookie,
              slots[index].local == e.local, slots[index].peer == e.peer else { return false }
        slots[index].bytes.withUnsafeBufferPointer { out.append($0) }
        return true
    }

    /// Keeps what the caller rendered for `e`'s socket since `start` in `out`.
    package mutating func remember(for e: TraceEvent, renderedFrom start: Int, in out: TraceBytes) {
        let index = e.conn & mask
        slots[index].valid = true
        slots[index].side = e.side
        slots[index].pid = e.pid
        slots[index].conn = e.conn
        slots[index].cookie = e.cookie
        slots[index].local = e.local
        slots[index].peer = e.peer
        slots[index].bytes.removeAll(keepingCapacity: true)
        // As a typed buffer: one memcpy (a raw buffer's slice was appended byte by byte).
        out.withUnsafeBytes { all in
            UnsafeRawBufferPointer(rebasing: all[start...]).withMemoryRebound(to: UInt8.self) {
                slots[index].bytes.append(contentsOf: $0)
            }
        }
    }
}
