import SocketKit
import TCPTrace

/// Latencies in log-linear buckets (32 per power of two, ≤ 3% error), so a run of any length
/// keeps a fixed 16 KiB per thread and percentiles come out of counts, not stored samples.
public struct LatencyHistogram: Sendable, Equatable {
    static let subBits = 5
    static let subCount = 1 << subBits
    private(set) var counts = [UInt64](repeating: 0, count: (64 - subBits + 1) * subCount)
    public private(set) var count: UInt64 = 0
    public private(set) var maxNs: UInt64 = 0
    public private(set) var minNs: UInt64 = .max
    public private(set) var sumNs: UInt64 = 0

    public init() {}

    static func index(_ value: UInt64) -> Int {
        if value < UInt64(subCount) { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount          // ≥ subBits
        let sub = Int((value >> UInt64(exponent - subBits)) & UInt64(subCount - 1))
        return (exponent - subBits + 1) * subCount + sub
    }

    /// The largest value that falls into bucket `index` (percentiles never under-report).
    static func upperBound(_ index: Int) -> UInt64 {
        if index < subCount { return UInt64(index) }
        let exponent = index / subCount + subBits - 1
        let sub = UInt64(index % subCount)
        let low = (UInt64(subCount) + sub) << UInt64(exponent - subBits)
        return low + (1 << UInt64(exponent - subBits)) - 1
    }

    public mutating func record(_ ns: UInt64) {
        counts[Self.index(ns)] += 1
        count += 1
        sumNs &+= ns
        maxNs = max(maxNs, ns)
        minNs = min(minNs, ns)
    }

    public mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        count += other.count
        sumNs &+= other.sumNs
        maxNs = max(maxNs, other.maxNs)
        minNs = min(minNs, other.minNs)
    }

    /// The value at or below which `fraction` (0...1) of the samples fall; 0 when empty.
    /// Never above the exact maximum.
    public func percentile(_ fraction: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = max(1, UInt64((Double(count) * fraction).rounded(.up)))
        var seen: UInt64 = 0
        for (index, n) in counts.enumerated() where n > 0 {
            seen += n
            if seen >= rank { return min(Self.upperBound(index), maxNs) }
        }
        return maxNs
    }
}
