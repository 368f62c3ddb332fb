import Testing
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
}
