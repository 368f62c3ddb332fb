/// The kernel router's hash maps: open addressing with linear probing and backward-shift
/// deletion, each slot holding its key's hash, over one buffer the map owns.
///
/// Why not `Dictionary`: the router makes ~25 map operations a connection, and Dictionary's
/// generic find, insert and delete paths (bucket bitmaps, uniqueness checks, a hash recomputed
/// when entries move) were ~3,000 instructions a connection, ~9% of a traced server's under
/// connect churn (callgrind). Here an operation is one hash, a short probe and a key compare.
///
/// Keys come partly from peers (a 4-tuple), so the hash is seeded per map with a random seed
/// and mixes every word non-linearly (`RouterHash`): colliding keys cannot be chosen without it.
/// The load stays at most 3/4, so probes stay short; the buffer doubles when it would pass that.
///
/// A value type around one buffer, for a router that is never copied (it lives in a Mutex):
/// copies would share the buffer. Not thread-safe.
struct RouterMap<Key: RouterMapKey, Value> {
    private struct Slot {
        var key: Key?
        var hash: UInt64 = 0
        var value: Value?
    }

    private final class Buffer {
        let slots: UnsafeMutablePointer<Slot>
        let capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            slots = .allocate(capacity: capacity)
            slots.initialize(repeating: Slot(), count: capacity)
        }

        deinit {
            slots.deinitialize(count: capacity)
            slots.deallocate()
        }
    }

    /// Owns the slots; `slots` and `mask` repeat what the hot paths read, so a probe does not
    /// go through the class reference.
    private var buffer: Buffer
    private var slots: UnsafeMutablePointer<Slot>
    private var mask: Int
    private let seed: UInt64
    private(set) var count = 0

    /// `capacity`: slots to start with, rounded up to a power of two.
    init(capacity: Int = 64) {
        var size = 8
        while size < capacity { size *= 2 }
        buffer = Buffer(capacity: size)
        slots = buffer.slots
        mask = size - 1
        seed = UInt64.random(in: .min ... .max)
    }

    var isEmpty: Bool { count == 0 }

    subscript(key: Key) -> Value? {
        get {
            let (index, found) = find(key, hash: key.routerHash(seed: seed))
            return found ? slots[index].value : nil
        }
        set {
            let hash = key.routerHash(seed: seed)
            var (index, found) = find(key, hash: hash)
            guard let newValue else {
                if found { delete(at: index) }
                return
            }
            if found {
                slots[index].value = newValue
                return
            }
            if (count + 1) * 4 > (mask + 1) * 3 {
                grow()
                index = find(key, hash: hash).index
            }
            slots[index] = Slot(key: key, hash: hash, value: newValue)
            count += 1
        }
    }

    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        let (index, found) = find(key, hash: key.routerHash(seed: seed))
        guard found else { return nil }
        let value = slots[index].value
        delete(at: index)
        return value
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func find(_ key: Key, hash: UInt64) -> (index: Int, found: Bool) {
        var index = Int(truncatingIfNeeded: hash) & mask
        while true {
            let slot = slots + index
            // The stored hash first: a key is compared only when it almost surely matches.
            if slot.pointee.hash == hash, let stored = slot.pointee.key, stored == key { return (index, true) }
            if slot.pointee.key == nil { return (index, false) }
            index = (index + 1) & mask
        }
    }

    /// Empties slot `index`, moving back the entries after it that would otherwise no longer be
    /// found (those whose home slot is not between the hole and themselves, cyclically).
    private mutating func delete(at index: Int) {
        var hole = index
        var next = index
        while true {
            next = (next + 1) & mask
            guard slots[next].key != nil else { break }
            let home = Int(truncatingIfNeeded: slots[next].hash) & mask
            let reachable = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if reachable { continue }
            slots[hole] = slots[next]
            hole = next
        }
        slots[hole] = Slot()
        count -= 1
    }

    private mutating func grow() {
        let old = buffer
        buffer = Buffer(capacity: old.capacity * 2)
        slots = buffer.slots
        mask = buffer.capacity - 1
        for position in 0..<old.capacity where old.slots[position].key != nil {
            var index = Int(truncatingIfNeeded: old.slots[position].hash) & mask
            while slots[index].key != nil { index = (index + 1) & mask }
            slots[index] = old.slots[position]
        }
    }
}

/// A key of a `RouterMap`: its seeded hash.
protocol RouterMapKey: Equatable {
    func routerHash(seed: UInt64) -> UInt64
}
