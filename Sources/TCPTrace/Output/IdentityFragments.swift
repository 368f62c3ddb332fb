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
        /// The fragment's length in the slot's stretch of `bytes`.
        var length = 0
    }

    /// Every slot's bytes in one buffer, `maxBytes` a slot: remembering a fragment is one
    /// memcpy, where a per-slot array's emptying and appending cost ~850 instructions a
    /// connection (once per connection under connect churn: each new socket misses; callgrind).
    private final class Bytes {
        let base: UnsafeMutablePointer<UInt8>
        init(count: Int) { base = .allocate(capacity: count) }
        deinit { base.deallocate() }
    }

    /// A text identity column (`server #17  127.0.0.1:7007 ⇄ [2001:db8::1]:53422`, padded) or
    /// the JSON members fit; a longer one is rendered each time.
    static let maxBytes = 192

    private var slots: [Slot]
    private let bytes: Bytes
    private let mask: Int

    /// `slotCount`: a power of two.
    package init(slotCount: Int = 64) {
        precondition(slotCount > 0 && slotCount & (slotCount - 1) == 0, "slotCount must be a power of two")
        slots = Array(repeating: Slot(), count: slotCount)
        bytes = Bytes(count: slotCount * Self.maxBytes)
        mask = slotCount - 1
    }

    /// Appends the fragment remembered for `e`'s socket and returns true, or returns false:
    /// then the caller renders it and calls `remember`.
    package mutating func appendRemembered(for e: TraceEvent, into out: inout TraceBytes) -> Bool {
        let index = e.conn & mask
        guard slots[index].valid, slots[index].conn == e.conn, slots[index].side == e.side,
              slots[index].pid == e.pid, slots[index].cookie == e.cookie,
              slots[index].local == e.local, slots[index].peer == e.peer else { return false }
        out.append(UnsafeBufferPointer(start: bytes.base + index * Self.maxBytes, count: slots[index].length))
        return true
    }

    /// Keeps what the caller rendered for `e`'s socket since `start` in `out`.
    package mutating func remember(for e: TraceEvent, renderedFrom start: Int, in out: TraceBytes) {
        let index = e.conn & mask
        let length = out.count - start
        guard length <= Self.maxBytes else {
            slots[index].valid = false
            return
        }
        out.withUnsafeBytes { all in
            guard let written = all.baseAddress else { return }
            (bytes.base + index * Self.maxBytes).update(from: written.assumingMemoryBound(to: UInt8.self) + start, count: length)
        }
        slots[index] = Slot(valid: true, side: e.side, pid: e.pid, conn: e.conn, cookie: e.cookie,
                            local: e.local, peer: e.peer, length: length)
    }
}
