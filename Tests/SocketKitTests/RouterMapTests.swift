import Testing
@testable import TCPTrace

/// `RouterMap` (the kernel router's open-addressing tables) against `Dictionary`: random
/// inserts, updates, removals and lookups, with hashes made to collide and to wrap around the
/// table's end, so every probe and backward-shift path runs.
@Suite struct RouterMapTests {
    /// A key whose hash the test chooses.
    struct Key: RouterMapKey, Hashable {
        var value: UInt64
        var hashing: Hashing
        func routerHash(seed: UInt64) -> UInt64 {
            switch hashing {
            case .collide: return value % 7                      // long runs from slot 0 up
            case .wrap: return UInt64.max - value % 3             // runs across the last slot
            case .seeded: return RouterHash.mix(RouterHash.start(seed), value)
            }
        }
        static func == (a: Key, b: Key) -> Bool { a.value == b.value }
        func hash(into hasher: inout Hasher) { hasher.combine(value) }
    }

    enum Hashing: CaseIterable { case collide, wrap, seeded }

    final class Target {}

    @Test(arguments: Hashing.allCases)
    func agreesWithDictionary(hashing: Hashing) {
        // A fixed sequence (splitmix64): a failure replays.
        var state: UInt64 = 0x5eed
        func next(_ bound: UInt64) -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            return RouterHash.mix(state, 0) % bound
        }
        var mismatches = 0
        for _ in 0..<50 {
            var map = RouterMap<Key, Target>(capacity: 8)
            var reference: [Key: Target] = [:]
            for _ in 0..<2_000 {
                let key = Key(value: next(64), hashing: hashing)
                switch next(4) {
                case 0, 1:
                    let target = Target()
                    map[key] = target
                    reference[key] = target
                case 2:
                    map[key] = nil
                    reference[key] = nil
                default:
                    if map.removeValue(forKey: key) !== reference.removeValue(forKey: key) { mismatches += 1 }
                }
                if map.count != reference.count { mismatches += 1 }
            }
            for value in 0..<64 {
                let key = Key(value: UInt64(value), hashing: hashing)
                if map[key] !== reference[key] { mismatches += 1 }
            }
        }
        #expect(mismatches == 0)
    }

    /// Growing keeps every entry; emptying leaves nothing findable.
    @Test func growsAndEmpties() {
        var map = RouterMap<Key, Int>(capacity: 8)
        let keys = (0..<1_000).map { Key(value: UInt64($0) &* 0x1_0001, hashing: .seeded) }
        for (index, key) in keys.enumerated() { map[key] = index }
        #expect(map.count == 1_000)
        #expect(keys.enumerated().allSatisfy { map[$1] == $0 })
        for key in keys { map[key] = nil }
        #expect(map.isEmpty)
        #expect(keys.allSatisfy { map[$0] == nil })
    }
}
