import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// The tracepoint router driven with synthetic kernel changes (no root needed): which socket's
/// tracker each system-wide change reaches, and which are never delivered.
@Suite struct TracepointRoutingTests {
    final class Probe: RouterTarget { var routerKeys = RouterKeys() }

    // Kernel TCP state numbers (include/net/tcp_states.h).
    static let established: UInt8 = 1, synSent: UInt8 = 2, synRecv: UInt8 = 3, finWait1: UInt8 = 4,
        finWait2: UInt8 = 5, close: UInt8 = 7, closeWait: UInt8 = 8, lastAck: UInt8 = 9, listen: UInt8 = 10

    struct Kernel: ~Copyable {
        var router = KernelRouter<Probe>(windowNs: 10_000_000_000, limit: 64)
        var clock: UInt64 = 1_000_000_000

        /// One change as the tracepoint reports it; `from`/`to` are (host, port) pairs.
        mutating func change(_ skaddr: UInt64, _ old: UInt8, _ new: UInt8, from: (String, UInt16),
                             to: (String, UInt16)) {
            clock += 1_000
            router.route(KernelStateChange(timestampNs: clock, skaddr: skaddr, oldState: old, newState: new,
                                           family: 2, sourcePort: from.1, destinationPort: to.1,
                                           sourceAddress: from.0, destinationAddress: to.0, pid: 0))
        }

        /// What each probe received, in order, as (old, new) pairs; clears the deliveries.
        mutating func take(_ probe: Probe) -> [[UInt8]] {
            let mine = router.deliveries.filter { $0.target === probe }.map { [$0.change.oldState, $0.change.newState] }
            router.removeDeliveries(to: probe)
            return mine
        }
    }

    static func address(_ host: String, _ port: UInt16) -> SocketAddress { SocketAddress(numericHost: host, port: port)! }

    static let any = ("0.0.0.0", UInt16(0))
    static let server = ("127.0.0.1", UInt16(8080))
    static func client(_ port: UInt16) -> (String, UInt16) { ("127.0.0.1", port) }

    @Test func listenerChangeBeforeRegistration_isClaimedWhenTheListenerRegisters() {
        var kernel = Kernel()
        let listener = Probe()
        kernel.change(0xA0, Self.close, Self.listen, from: Self.server, to: Self.any)
        #expect(kernel.router.deliveries.isEmpty)
        kernel.router.register(listener, local: Self.address("127.0.0.1", 8080), peer: nil)
        #expect(kernel.take(listener) == [[Self.close, Self.listen]])
        // Its skaddr is known now: the close reaches it directly.
        kernel.change(0xA0, Self.listen, Self.close, from: Self.server, to: Self.any)
        #expect(kernel.take(listener) == [[Self.listen, Self.close]])
        #expect(kernel.router.pendingCount == 0)
    }

    @Test func reusePortListeners_takeTheirListenChangesOldestFirst_andSkipDeadOnes() {
        var kernel = Kernel()
        let first = Probe(), second = Probe()
        kernel.change(0xA0, Self.close, Self.listen, from: Self.server, to: Self.any)
        kernel.change(0xA0, Self.listen, Self.close, from: Self.server, to: Self.any)  // died before registering
        kernel.change(0xB0, Self.close, Self.listen, from: Self.server, to: Self.any)
        kernel.change(0xC0, Self.close, Self.listen, from: Self.server, to: Self.any)
        kernel.router.register(first, local: Self.address("127.0.0.1", 8080), peer: nil)
        kernel.router.register(second, local: Self.address("127.0.0.1", 8080), peer: nil)
        #expect(kernel.take(first) == [[Self.close, Self.listen]])
        #expect(kernel.take(second) == [[Self.close, Self.listen]])
        kernel.change(0xC0, Self.listen, Self.close, from: Self.server, to: Self.any)
        kernel.change(0xB0, Self.listen, Self.close, from: Self.server, to: Self.any)
        #expect(kernel.take(first).count == 1)
        #expect(kernel.take(second).count == 1)
    }

    @Test func listenerRegisteredFirst_receivesItsListenChangeWhenItArrives() {
        var kernel = Kernel()
        let listener = Probe()
        kernel.router.register(listener, local: Self.address("127.0.0.1", 8080), peer: nil)
        kernel.change(0xA0, Self.close, Self.listen, from: Self.server, to: Self.any)
        #expect(kernel.take(listener) == [[Self.close, Self.listen]])
        #expect(kernel.router.pendingCount == 0)
    }

    @Test func listenerOnAReusedSkaddr_isClaimed_despiteTheEarlierSocketsClose() {
        var kernel = Kernel()
        let listener = Probe()
        kernel.change(0xA0, Self.established, Self.close, from: Self.client(5000), to: ("127.0.0.1", 9999))
        kernel.change(0xA0, Self.close, Self.listen, from: Self.server, to: Self.any)
        kernel.router.register(listener, local: Self.address("127.0.0.1", 8080), peer: nil)
        #expect(kernel.take(listener) == [[Self.close, Self.listen]])
    }

    @Test func acceptedChild_claimsItsHandshake_thenReceivesTheRestBySkaddr() {
        var kernel = Kernel()
        let child = Probe()
        kernel.change(0xD0, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40000))
        kernel.change(0xD0, Self.synRecv, Self.established, from: Self.server, to: Self.client(40000))
        kernel.router.register(child, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40000))
        #expect(kernel.take(child) == [[Self.listen, Self.synRecv], [Self.synRecv, Self.established]])
        kernel.change(0xD0, Self.established, Self.closeWait, from: Self.server, to: Self.client(40000))
        kernel.change(0xD0, Self.closeWait, Self.lastAck, from: Self.server, to: Self.client(40000))
        kernel.change(0xD0, Self.lastAck, Self.close, from: Self.server, to: Self.client(40000))
        #expect(kernel.take(child) == [[Self.established, Self.closeWait], [Self.closeWait, Self.lastAck], [Self.lastAck, Self.close]])
        #expect(kernel.router.pendingCount == 0)
    }

    @Test func clientsUnboundSynSent_isAttributedBySkaddrOnceTheTupleShows() {
        var kernel = Kernel()
        let client = Probe()
        kernel.router.register(client, local: Self.address("127.0.0.1", 40000), peer: Self.address("127.0.0.1", 8080))
        kernel.change(0xE0, Self.close, Self.synSent, from: ("0.0.0.0", 0), to: Self.server)
        #expect(kernel.router.deliveries.isEmpty)
        kernel.change(0xE0, Self.synSent, Self.established, from: Self.client(40000), to: Self.server)
        #expect(kernel.take(client) == [[Self.close, Self.synSent], [Self.synSent, Self.established]])
    }

    @Test func reusedSkaddr_lifeEndsAtClose_soTheNextSocketIsNotDeliveredToTheOldTracker() {
        var kernel = Kernel()
        let child = Probe()
        kernel.change(0xD0, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40000))
        kernel.change(0xD0, Self.synRecv, Self.established, from: Self.server, to: Self.client(40000))
        kernel.change(0xD0, Self.established, Self.close, from: Self.server, to: Self.client(40000))
        // Another process's socket gets the same struct sock right away.
        kernel.change(0xD0, Self.close, Self.synSent, from: ("0.0.0.0", 0), to: ("127.0.0.1", 9000))
        kernel.change(0xD0, Self.synSent, Self.established, from: Self.client(41000), to: ("127.0.0.1", 9000))
        kernel.router.register(child, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40000))
        #expect(kernel.take(child) == [[Self.listen, Self.synRecv], [Self.synRecv, Self.established], [Self.established, Self.close]])
        kernel.change(0xD0, Self.established, Self.finWait1, from: Self.client(41000), to: ("127.0.0.1", 9000))
        #expect(kernel.router.deliveries.isEmpty)
        #expect(kernel.router.pendingCount == 3)
    }

    @Test func newestSocketWithTheTuple_isTheOneClaimed() {
        var kernel = Kernel()
        let child = Probe()
        // An older connection with the same 4-tuple, dead already, on another skaddr.
        kernel.change(0xD0, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40000))
        kernel.change(0xD0, Self.synRecv, Self.close, from: Self.server, to: Self.client(40000))
        kernel.change(0xD8, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40000))
        kernel.router.register(child, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40000))
        let mine = kernel.router.deliveries.filter { $0.target === child }.map(\.change.skaddr)
        #expect(mine == [0xD8])
    }

    @Test func otherProcessesSockets_areNeverDelivered_andAgeOut() {
        var kernel = Kernel()
        let listener = Probe()
        kernel.router.register(listener, local: Self.address("127.0.0.1", 8080), peer: nil)
        kernel.change(0xF0, Self.close, Self.synSent, from: ("0.0.0.0", 0), to: ("127.0.0.1", 7000))
        kernel.change(0xF0, Self.synSent, Self.established, from: Self.client(42000), to: ("127.0.0.1", 7000))
        kernel.change(0xF8, Self.close, Self.listen, from: ("127.0.0.1", 7000), to: Self.any)
        #expect(kernel.router.deliveries.isEmpty)
        #expect(kernel.router.pendingCount == 3)
        kernel.router.prune(now: kernel.clock + 10_000_000_001)
        #expect(kernel.router.pendingCount == 0)
        // Pruned: a tracker registering for them now finds nothing and waits.
        let late = Probe()
        kernel.router.register(late, local: Self.address("127.0.0.1", 42000), peer: Self.address("127.0.0.1", 7000))
        #expect(kernel.router.deliveries.isEmpty)
    }

    @Test func pendingIsBoundedByTheLimit_droppingTheOldestFirst() {
        var kernel = Kernel()
        for port in UInt16(1)...100 {
            kernel.change(UInt64(port) << 8, Self.listen, Self.synRecv, from: Self.server, to: Self.client(port))
        }
        kernel.router.prune(now: kernel.clock)
        #expect(kernel.router.pendingCount == 64)
        let oldest = Probe(), newest = Probe()
        kernel.router.register(oldest, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 1))
        kernel.router.register(newest, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 100))
        #expect(kernel.take(oldest).isEmpty)
        #expect(kernel.take(newest) == [[Self.listen, Self.synRecv]])
    }

    @Test func unregisteredTracker_receivesNothingMore_andFreesItsKeysForTheNextSocket() {
        var kernel = Kernel()
        let first = Probe(), second = Probe(), waiting = Probe()
        kernel.change(0xD0, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40000))
        kernel.router.register(first, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40000))
        #expect(kernel.take(first).count == 1)
        kernel.router.unregister(first)
        kernel.change(0xD0, Self.synRecv, Self.established, from: Self.server, to: Self.client(40000))
        #expect(kernel.router.deliveries.isEmpty)
        // A tracker waiting for its tuple, unregistered before any change came: nothing either.
        kernel.router.register(waiting, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40001))
        kernel.router.unregister(waiting)
        kernel.change(0xD8, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40001))
        #expect(kernel.router.deliveries.isEmpty)
        // The skaddr's change went to pending, where the next tracker with the tuple finds it.
        kernel.router.register(second, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40001))
        #expect(kernel.take(second) == [[Self.listen, Self.synRecv]])
    }

    @Test func ipv4MappedAddresses_matchTheirIPv4Form() {
        var kernel = Kernel()
        let child = Probe()
        kernel.change(0xD0, Self.listen, Self.synRecv, from: ("::ffff:127.0.0.1", 8080), to: ("::ffff:127.0.0.1", 40000))
        kernel.router.register(child, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40000))
        #expect(kernel.take(child) == [[Self.listen, Self.synRecv]])
    }

    @Test func churnOfOtherSockets_keepsPendingWithinTheLimit_andOursStillRoute() {
        var kernel = Kernel()
        // Slab reuse: a handful of skaddrs, each through many lives of other processes' sockets.
        for round in 0..<2_000 {
            let skaddr = UInt64(0xF00 + round % 4), port = UInt16(30_000 + round % 5_000)
            kernel.change(skaddr, Self.close, Self.synSent, from: ("0.0.0.0", 0), to: ("127.0.0.1", 7000))
            kernel.change(skaddr, Self.synSent, Self.established, from: Self.client(port), to: ("127.0.0.1", 7000))
            kernel.change(skaddr, Self.established, Self.close, from: Self.client(port), to: ("127.0.0.1", 7000))
            kernel.router.prune(now: kernel.clock)
        }
        #expect(kernel.router.pendingCount <= 64)
        #expect(kernel.router.deliveries.isEmpty)
        let child = Probe()
        kernel.change(0xF01, Self.listen, Self.synRecv, from: Self.server, to: Self.client(40000))
        kernel.router.register(child, local: Self.address("127.0.0.1", 8080), peer: Self.address("127.0.0.1", 40000))
        #expect(kernel.take(child) == [[Self.listen, Self.synRecv]])
    }
}
