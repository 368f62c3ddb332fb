/// How often TCPWatch dumps the socket table. A dump costs kernel time in proportion to every
/// socket of the namespace, watched or not (the kernel walks them all; the filter only saves
/// copying), so the rate follows both what happens and what a dump costs:
/// - fast (`fastestNs`) while watched sockets change or sit in a transient state;
/// - doubling towards `slowestNs` while nothing changes;
/// - never faster than `budget` allows: an interval at least cost / budget, measured per dump
///   (thread CPU time, kernel included), so a host with 30,000 TIME_WAIT sockets slows the fast
///   rate instead of spending a core;
/// - never slower than `slowestNs` (0.45 s, so that gaps stay under 0.5 s), whatever a dump costs.
public struct AdaptivePolling: Sendable {
    public static let fastestNs: UInt64 = 10_000_000
    /// 0.45 s, not 0.5: measured under a churn that kept both CPUs busy, a 0.5 s target gave
    /// gaps of 508–537 ms between polls (the loop is woken late); 0.45 s keeps them below 0.5 s.
    public static let slowestNs: UInt64 = 450_000_000
    /// Share of one core the dumps may take while fast.
    public var budget: Double
    public private(set) var intervalNs: UInt64 = fastestNs
    /// Smoothed CPU cost of one round of dumps (IPv4 + IPv6).
    public private(set) var costNs: Double = 0
    public private(set) var polls = 0
    public private(set) var totalCostNs: UInt64 = 0

    public init(budget: Double = 0.05) { self.budget = budget }

    /// The interval until the next poll, after one that cost `cost` ns and showed `busy`
    /// (a change, or a socket in a transient state).
    public mutating func next(busy: Bool, cost: UInt64) -> UInt64 {
        polls += 1
        totalCostNs += cost
        costNs = polls == 1 ? Double(cost) : costNs * 0.8 + Double(cost) * 0.2
        let floor = min(Self.slowestNs, max(Self.fastestNs, UInt64(costNs / budget)))
        intervalNs = busy ? floor : min(Self.slowestNs, max(floor, intervalNs * 2))
        return intervalNs
    }
}
