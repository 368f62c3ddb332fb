import Testing
import Synchronization
@testable import TCPTrace

/// `ReusedBuffer`, the raw buffer of the kernel hand-off (a link's inbox of changes, the router's
/// deliveries), against plain arrays, across growth.
@Suite struct KernelInboxTests {
    static func change(_ n: Int) -> KernelStateChange {
        KernelStateChange(timestampNs: UInt64(1_000 + n), skaddr: 0xfeed, oldState: 1, newState: 8, family: 2,
                          sourcePort: 7, destinationPort: 9, source: KernelAddress(ipv4: 1),
                          destination: KernelAddress(ipv4: 2), pid: 0)
    }

    static func post(_ numbers: [Int], into inbox: inout ReusedBuffer<KernelStateChange>) {
        numbers.map(change).withUnsafeBufferPointer { inbox.append(contentsOf: $0) }
    }

    static func take(_ inbox: inout ReusedBuffer<KernelStateChange>, upTo limit: Int) -> [Int] {
        var out: [Int] = []
        withUnsafeTemporaryAllocation(of: KernelStateChange.self, capacity: limit) { buffer in
            let taken = inbox.moveFront(into: buffer)
            out = buffer[0..<taken].map { Int($0.timestampNs) - 1_000 }
        }
        return out
    }

    @Test func inbox_keepsOrder_acrossGrowth_partialTakes_andPutBack() {
        var inbox = ReusedBuffer<KernelStateChange>(capacity: 2)
        var expected: [Int] = []
        Self.post([1, 2, 3], into: &inbox)                  // grows past its capacity
        expected += [1, 2, 3]
        #expect(Self.take(&inbox, upTo: 2) == [1, 2])         // the rest moves to the front
        expected.removeFirst(2)
        Self.post(Array(4...20), into: &inbox)
        expected += Array(4...20)
        [-2, -1, 0].map(Self.change).withUnsafeBufferPointer { inbox.prepend(contentsOf: $0) }   // a put-back
        expected = [-2, -1, 0] + expected
        #expect(inbox.count == expected.count)
        #expect(Self.take(&inbox, upTo: 100) == expected)
        #expect(inbox.count == 0)
        #expect(Self.take(&inbox, upTo: 4).isEmpty)
    }

    @Test func reusedBuffer_matchesAnArray_andReleasesWhatItHeld() {
        final class Token {}
        var buffer = ReusedBuffer<(Token, Int)>(capacity: 1)
        weak var first: Token?
        for round in 0..<3 {
            var mirror: [Int] = []
            for n in 0..<(5 + round * 7) {
                let token = Token()
                if round == 0 && n == 0 { first = token }
                buffer.append((token, n))
                mirror.append(n)
            }
            let count = buffer.count
            #expect(count == mirror.count)
            #expect((0..<count).map { buffer[$0].1 } == mirror)
            let middle = buffer.withElements(2..<4) { $0.map(\.1) }
            #expect(middle == [2, 3])
            buffer.removeAll()
            let empty = buffer.isEmpty
            #expect(empty)
        }
        #expect(first == nil, "an emptied buffer still held its elements")
    }

    /// A receiver that only counts.
    final class Receiver: KernelChangeReceiver {
        let applied = Atomic<Int>(0)
        var fdClosed: Bool { false }
        func applyRoutedKernelEvents() { applied.add(1, ordering: .relaxed) }
    }

    static func take(_ link: KernelLink) -> [Int] {
        var out: [Int] = []
        link.takeChanges { out += $0.map { Int($0.timestampNs) - 1_000 } }
        return out
    }

    /// A link's inbox: a few changes come out in one lock round trip (8 slots on the stack),
    /// more in two; order kept either way. The hand-out gets the receiver with the changes, and
    /// a run ending the socket's life lets it go.
    @Test(.enabled(if: Oracle.available, "a link needs the tracepoint source (root or CAP_PERFMON)"))
    func link_takesFewOrMany_inOrder_andPostReturnsTheReceiverUntilTheLifeEnds() throws {
        let source = try TracepointSource(sink: TraceCollector(), side: .server)
        defer { source.stop() }
        let link = KernelLink(source: source, mailbox: nil, diag: nil)
        let none = [1, 2, 3].map(Self.change).withUnsafeBufferPointer { link.post($0, lifeEnded: false) }
        #expect(none == nil && link.hasWaitingChanges)
        #expect(Self.take(link) == [1, 2, 3] && !link.hasWaitingChanges)
        let receiver = Receiver()
        link.tracker = receiver
        let many = Array(4...20)
        let got = many.map(Self.change).withUnsafeBufferPointer { link.post($0, lifeEnded: false) }
        #expect(got === receiver && link.tracker === receiver)
        #expect(Self.take(link) == many && !link.hasWaitingChanges)
        let last = [21].map(Self.change).withUnsafeBufferPointer { link.post($0, lifeEnded: true) }
        #expect(last === receiver && link.tracker == nil)
        #expect(Self.take(link) == [21])
        #expect(Self.take(link).isEmpty)
    }
}
