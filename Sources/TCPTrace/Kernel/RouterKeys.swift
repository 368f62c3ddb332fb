/// Keys of the kernel router's maps, hashed with a seeded 64-bit mixer (splitmix64's finalizer
/// per word) instead of SipHash through `Hasher`. A connection costs the router ~25 map
/// operations; SipHash made `Hasher` ~6% of a traced server's instructions under connect
/// churn (callgrind). The 4-tuple comes partly from peers, so the mix is seeded (each
/// `RouterMap`'s random seed; Dictionary's per-process seed for the rare maps that stay
/// Dictionaries) and non-linear in every word: colliding keys cannot be chosen without the
/// seed. `_rawHashValue(seed:)` is the standard library's hook for a type's own hash
/// (Dictionary calls it); `hash(into:)` feeds the same words, for `Hasher`.
enum RouterHash {
    @inline(__always)
    static func mix(_ hash: UInt64, _ word: UInt64) -> UInt64 {
        var x = hash ^ word
        x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
        x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
        return x ^ (x >> 31)
    }

    @inline(__always)
    static func start(_ seed: UInt64) -> UInt64 { seed &+ 0x9e37_79b9_7f4a_7c15 }
}

/// A kernel socket address (`skaddr`): one socket's identity while it lives.
struct Skaddr: Hashable, RouterMapKey {
    var raw: UInt64
    init(_ raw: UInt64) { self.raw = raw }

    @inline(__always)
    func routerHash(seed: UInt64) -> UInt64 { RouterHash.mix(RouterHash.start(seed), raw) }

    func hash(into hasher: inout Hasher) { hasher.combine(raw) }
    func _rawHashValue(seed: Int) -> Int {
        Int(truncatingIfNeeded: routerHash(seed: UInt64(UInt(bitPattern: seed))))
    }
}

/// What the router files a target under, kept on the target so unregistering removes exactly
/// those entries without a map from targets to keys.
struct RouterKeys {
    var skaddr: UInt64?
    var tuple: KernelTuple?
    var listener: KernelTuple?
}

/// A routing target (a tracker's link). `routerKeys` belongs to the router: read and written
/// only by it, under its owner's lock.
protocol RouterTarget: AnyObject {
    var routerKeys: RouterKeys { get set }
}

extension KernelTuple: RouterMapKey {
    @inline(__always)
    func routerHash(seed: UInt64) -> UInt64 {
        var hash = RouterHash.mix(RouterHash.start(seed), UInt64(localPort) << 16 | UInt64(peerPort))
        hash = RouterHash.mix(hash, localHost.high)
        hash = RouterHash.mix(hash, localHost.low)
        hash = RouterHash.mix(hash, peerHost.high)
        return RouterHash.mix(hash, peerHost.low)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(UInt64(localPort) << 16 | UInt64(peerPort))
        hasher.combine(localHost.high); hasher.combine(localHost.low)
        hasher.combine(peerHost.high); hasher.combine(peerHost.low)
    }

    func _rawHashValue(seed: Int) -> Int {
        Int(truncatingIfNeeded: routerHash(seed: UInt64(UInt(bitPattern: seed))))
    }
}
