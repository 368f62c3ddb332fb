import SocketKit

/// A connection's (or listener's) addresses as the tracepoint shows them, local side first:
/// fixed-size integers, so hashing one allocates nothing and compares no text. IPv4 and
/// IPv4-mapped IPv6 addresses are one form (`KernelAddress`).
struct KernelTuple: Hashable {
    var localPort: UInt16, peerPort: UInt16
    var localHost: KernelAddress, peerHost: KernelAddress

    init(_ change: KernelStateChange) {
        localPort = change.sourcePort
        peerPort = change.destinationPort
        localHost = change.source
        peerHost = change.destination
    }

    /// `peer` nil: a listener (the key listeners are matched by: port and host only).
    init(local: SocketAddress, peer: SocketAddress?) {
        localPort = local.port
        peerPort = peer?.port ?? 0
        localHost = KernelAddress(local)
        peerHost = peer.map(KernelAddress.init) ?? Self.noPeer
    }

    private static let noPeer = KernelAddress(ipv4: 0)

    /// The key of a listener bound here.
    var listenerKey: KernelTuple {
        var key = self
        key.peerPort = 0
        key.peerHost = Self.noPeer
        return key
    }
}

/// Attributes system-wide `sock:inet_sock_set_state` changes to registered sockets (`Target`s):
/// by skaddr once known, else by 4-tuple (connections) or port + host (listeners). Changes
/// nobody claims wait in `pending` for a while (a listener's CLOSE→LISTEN and a child's
/// LISTEN→SYN_RECV happen before the tracker knows its addresses; a client's CLOSE→SYN_SENT has
/// source port 0 and is attributed by skaddr once SYN_SENT→ESTABLISHED shows the 4-tuple), then
/// are dropped unseen: other processes' sockets are never delivered.
///
/// A skaddr is one socket's address only for that socket's life: it ends at a change to CLOSE,
/// after which the kernel may reuse it at once.
///
/// Every structure is a hash map (`RouterMap` on the hot path) or a FIFO with a head index, so routing a change, registering
/// and unregistering cost O(1) amortized (plus the few changes of the one socket concerned) —
/// under connection churn `pending` holds tens of thousands of other sockets' changes.
/// Not thread-safe: the owner (TracepointSource) holds a lock.
///
/// Each target carries the keys it occupies (`RouterKeys`): a map from target to keys cost ~5
/// hash-map operations a connection (~600 instructions under connect churn, callgrind).
struct KernelRouter<Target: RouterTarget>: ~Copyable {
    /// What routing produced, in kernel order: the changes, and runs of consecutive changes for
    /// one target (`runs[i]` covers `delivered[runs[i - 1].end..<runs[i].end]`). The owner hands
    /// them out and calls `clearDeliveries()`. Two buffers, not one Array of (target, change)
    /// pairs: a target is retained and released once a run instead of once a change, and
    /// emptying them is no generic `replaceSubrange` (`ReusedBuffer`); the pairs were ~850
    /// instructions a connection to copy out of and empty (callgrind).
    private(set) var delivered = ReusedBuffer<KernelStateChange>()
    private(set) var runs = ReusedBuffer<Run>()

    /// `delivered[start..<end]` goes to `target`; `start` is the previous run's `end`.
    struct Run {
        let target: Target
        var end: Int
    }

    /// Empties `delivered` and `runs`, keeping their memory.
    mutating func clearDeliveries() {
        delivered.removeAll()
        runs.removeAll()
    }

    /// Each delivered change with its target, in order (tests).
    var deliveries: [(target: Target, change: KernelStateChange)] {
        var start = 0
        var out: [(target: Target, change: KernelStateChange)] = []
        for index in 0..<runs.count {
            let run = runs[index]
            for position in start..<run.end { out.append((run.target, delivered[position])) }
            start = run.end
        }
        return out
    }

    /// Drops what was delivered to `target`, keeping the rest in order (tests).
    mutating func removeDeliveries(to target: Target) {
        let kept = deliveries.filter { $0.target !== target }
        clearDeliveries()
        for delivery in kept { deliver(delivery.change, to: delivery.target) }
    }

    /// A drained batch waiting for `routeIncoming`; its capacity is kept between batches.
    var incoming: [KernelStateChange] = []

    /// Unclaimed changes older than this are dropped: long enough for accept() to pick up a child.
    let windowNs: UInt64
    let limit: Int

    init(windowNs: UInt64 = 10_000_000_000, limit: Int = 65_536) {
        self.windowNs = windowNs
        self.limit = limit
    }

    private static var none: UInt64 { .max }

    /// A pending change, linked to the previous and next pending changes of its skaddr.
    private struct Entry {
        var change: KernelStateChange
        var tuple: KernelTuple
        var previous: UInt64
        var next: UInt64
        var live: Bool
    }

    private var bySkaddr = RouterMap<Skaddr, Target>()
    /// Connections whose skaddr is not known yet.
    private var byTuple = RouterMap<KernelTuple, Target>()
    /// Listeners whose skaddr is not known yet, by port + host, oldest first.
    private var listeners: [KernelTuple: [Target]] = [:]

    /// Pending changes in arrival order, by sequence number (`ring[i]` is `baseSeq + i`); a
    /// claimed change stays as a dead slot until it reaches the head. Pruning pops the head.
    private var ring: [Entry] = []
    private var ringHead = 0
    private var baseSeq: UInt64 = 0
    /// Each skaddr's pending changes as a list through `ring` (possibly several lives).
    private var bySkaddrPending = RouterMap<Skaddr, (first: UInt64, last: UInt64)>()
    /// The newest pending change with a given 4-tuple (source port known).
    private var latestByTuple = RouterMap<KernelTuple, (skaddr: UInt64, seq: UInt64)>()
    /// Pending CLOSE→LISTEN changes by listener key, oldest first (few: listeners are rare).
    private var listens: [KernelTuple: [(skaddr: UInt64, seq: UInt64)]] = [:]
    /// Changes waiting in `pending`.
    private(set) var pendingCount = 0

    // MARK: Routing

    /// Routes and clears `incoming`.
    mutating func routeIncoming() {
        for index in incoming.indices { route(incoming[index]) }
        incoming.removeAll(keepingCapacity: true)
    }

    /// Routes one change: to `deliveries` when it is attributed, else to `pending`.
    mutating func route(_ change: KernelStateChange) {
        if let target = bySkaddr[Skaddr(change.skaddr)] {
            deliver(change, to: target)
            // Already routed by skaddr: only the socket's end changes the maps (rewriting the
            // same two entries on every change cost two hash-map writes each).
            if change.newState == KernelTCPState.close.rawValue { linked(target, last: change) }
            return
        }
        let tuple = KernelTuple(change)
        if change.destinationPort == 0, change.newState == KernelTCPState.listen.rawValue {
            let key = tuple.listenerKey
            if var waiting = listeners[key], !waiting.isEmpty {
                let target = waiting.removeFirst()
                listeners[key] = waiting.isEmpty ? nil : waiting
                target.routerKeys.listener = nil
                deliver(change, to: target)
                linked(target, last: change)
                return
            }
        } else if change.sourcePort != 0, !byTuple.isEmpty, let target = byTuple.removeValue(forKey: tuple) {
            // First change with the full 4-tuple: this skaddr is ours; a client's earlier
            // CLOSE→SYN_SENT (sport 0, unbound) with the same skaddr is too. (`byTuple` is
            // mostly empty under churn: a connection's first changes are drained, and parked,
            // before accept() returns it and it registers; testing saves a hash and a probe.)
            target.routerKeys.tuple = nil
            let seq = park(change, tuple: tuple)
            claim(skaddr: change.skaddr, anchor: seq, localPort: tuple.localPort, target: target)
            return
        }
        park(change, tuple: tuple)
    }

    /// The tracker knows its addresses: claim what the kernel already reported for them, or
    /// wait for it. `peer` nil: a listener.
    mutating func register(_ target: Target, local: SocketAddress, peer: SocketAddress?) {
        if let skaddr = target.routerKeys.skaddr, bySkaddr[Skaddr(skaddr)] === target { return }
        let tuple = KernelTuple(local: local, peer: peer)
        if peer == nil {
            // SO_REUSEPORT listeners share a port: take the oldest live one not yet claimed
            // (listeners are registered in the order they were created).
            if let found = listens[tuple]?.first(where: { bySkaddr[Skaddr($0.skaddr)] == nil && !diedAfter($0) }) {
                claim(skaddr: found.skaddr, anchor: found.seq, localPort: local.port, target: target)
            } else {
                listeners[tuple, default: []].append(target)
                target.routerKeys.listener = tuple
            }
            return
        }
        // The newest socket with this 4-tuple (an older one may have died and freed it).
        if let found = latestByTuple[tuple], bySkaddr[Skaddr(found.skaddr)] == nil {
            claim(skaddr: found.skaddr, anchor: found.seq, localPort: local.port, target: target)
        } else {
            byTuple[tuple] = target
            target.routerKeys.tuple = tuple
        }
    }

    /// The tracker is done: no more routing to it.
    mutating func unregister(_ target: Target) {
        let mine = target.routerKeys
        target.routerKeys = RouterKeys()
        if let skaddr = mine.skaddr, bySkaddr[Skaddr(skaddr)] === target { bySkaddr[Skaddr(skaddr)] = nil }
        if let tuple = mine.tuple, byTuple[tuple] === target { byTuple[tuple] = nil }
        if let key = mine.listener, var waiting = listeners[key] {
            waiting.removeAll { $0 === target }
            listeners[key] = waiting.isEmpty ? nil : waiting
        }
    }

    /// Drops unclaimed changes older than the window, then the oldest beyond the limit. `now`
    /// nil: no clock at hand, so nothing expires; dead slots are still dropped and the limits
    /// kept (an owner's sync: its clock read was ~1.7 vDSO calls a connection under churn, and
    /// leaving the slots to the reader's sync every 10 ms let the ring grow and be copied).
    mutating func prune(now: UInt64?) {
        let floor = now.map { $0 > windowNs ? $0 - windowNs : 0 } ?? 0
        while ringHead < ring.count {
            let oldest = ring[ringHead]
            if oldest.live {
                // Claimed changes leave dead slots behind a live one: bound those too (memory).
                guard oldest.change.timestampNs < floor || pendingCount > limit
                    || ring.count - ringHead > 4 * limit else { break }
                unlink(baseSeq + UInt64(ringHead))
            }
            ringHead += 1
        }
        // Compact once the consumed head is most of the storage: amortized O(1) per change.
        if ringHead == ring.count {
            baseSeq += UInt64(ringHead)
            ring.removeAll(keepingCapacity: true)
            ringHead = 0
        } else if ringHead > 1024 && ringHead * 2 > ring.count {
            baseSeq += UInt64(ringHead)
            ring.removeFirst(ringHead)
            ringHead = 0
        }
    }

    // MARK: Internals

    private func index(_ seq: UInt64) -> Int { Int(seq - baseSeq) }

    @discardableResult
    private mutating func park(_ change: KernelStateChange, tuple: KernelTuple) -> UInt64 {
        let seq = baseSeq + UInt64(ring.count)
        var entry = Entry(change: change, tuple: tuple, previous: Self.none, next: Self.none, live: true)
        if let list = bySkaddrPending[Skaddr(change.skaddr)] {
            entry.previous = list.last
            ring[index(list.last)].next = seq
            bySkaddrPending[Skaddr(change.skaddr)] = (list.first, seq)
        } else {
            bySkaddrPending[Skaddr(change.skaddr)] = (seq, seq)
        }
        ring.append(entry)
        pendingCount += 1
        if change.sourcePort != 0 { latestByTuple[tuple] = (change.skaddr, seq) }
        if change.destinationPort == 0 && change.newState == KernelTCPState.listen.rawValue {
            listens[tuple.listenerKey, default: []].append((change.skaddr, seq))
        }
        return seq
    }

    /// Whether the socket whose pending change is `seq` has died since (a later change to CLOSE).
    private func diedAfter(_ listen: (skaddr: UInt64, seq: UInt64)) -> Bool {
        var seq = ring[index(listen.seq)].next
        while seq != Self.none {
            if ring[index(seq)].change.newState == KernelTCPState.close.rawValue { return true }
            seq = ring[index(seq)].next
        }
        return false
    }

    /// Moves the changes of one socket's life on `skaddr` out of `pending` to `target`: back
    /// from the `anchor` change to the previous socket's death (a change to CLOSE) or a change
    /// with another local port, and forward to this socket's own death.
    private mutating func claim(skaddr: UInt64, anchor: UInt64, localPort: UInt16, target: Target) {
        guard anchor >= baseSeq, index(anchor) < ring.count, ring[index(anchor)].live else { return }
        var start = anchor
        while ring[index(start)].previous != Self.none {
            let earlier = ring[index(ring[index(start)].previous)].change
            if earlier.newState == KernelTCPState.close.rawValue || (earlier.sourcePort != 0 && earlier.sourcePort != localPort) { break }
            start = ring[index(start)].previous
        }
        var end = anchor
        while ring[index(end)].change.newState != 7 && ring[index(end)].next != Self.none {
            end = ring[index(end)].next
        }
        var seq = start
        while true {
            let next = ring[index(seq)].next
            deliver(ring[index(seq)].change, to: target)
            unlink(seq)
            if seq == end { break }
            seq = next
        }
        linked(target, last: delivered[delivered.count - 1])
    }

    /// Takes one pending change out of its skaddr's list and out of every index.
    private mutating func unlink(_ seq: UInt64) {
        let i = index(seq)
        let entry = ring[i]
        let skaddr = entry.change.skaddr
        if entry.previous != Self.none { ring[index(entry.previous)].next = entry.next }
        if entry.next != Self.none { ring[index(entry.next)].previous = entry.previous }
        if let list = bySkaddrPending[Skaddr(skaddr)] {
            let first = list.first == seq ? entry.next : list.first
            let last = list.last == seq ? entry.previous : list.last
            bySkaddrPending[Skaddr(skaddr)] = first == Self.none ? nil : (first, last)
        }
        if let latest = latestByTuple[entry.tuple], latest.seq == seq { latestByTuple[entry.tuple] = nil }
        if entry.change.destinationPort == 0 && entry.change.newState == KernelTCPState.listen.rawValue {
            let key = entry.tuple.listenerKey
            if var waiting = listens[key] {
                waiting.removeAll { $0.seq == seq }
                listens[key] = waiting.isEmpty ? nil : waiting
            }
        }
        ring[i].live = false
        pendingCount -= 1
    }

    private mutating func deliver(_ change: KernelStateChange, to target: Target) {
        delivered.append(change)
        if runs.count > 0 && runs[runs.count - 1].target === target {
            runs[runs.count - 1].end = delivered.count
        } else {
            runs.append(Run(target: target, end: delivered.count))
        }
    }

    /// After delivering up to `last`: the full socket is gone after a change to CLOSE (its
    /// skaddr may be reused at once), else its skaddr now routes to `target`.
    private mutating func linked(_ target: Target, last: KernelStateChange) {
        if last.newState == KernelTCPState.close.rawValue && last.oldState != KernelTCPState.close.rawValue {
            bySkaddr[Skaddr(last.skaddr)] = nil
            target.routerKeys.skaddr = nil
        } else {
            bySkaddr[Skaddr(last.skaddr)] = target
            target.routerKeys.skaddr = last.skaddr
        }
    }
}
