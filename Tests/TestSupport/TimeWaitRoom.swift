import Testing
import TCPTrace

/// Tests expecting a TIME_WAIT skip, with the numbers, when Linux would give none (its table is
/// full, e.g. within a minute of a connect/close benchmark) instead of failing on real behaviour.
/// Only tests that need TIME_WAIT carry the trait: help, bad arguments, unknown hosts never do.
public enum TimeWaitRoom {
    public static let nearlyFull = KernelCounters.timeWaitTableNearlyFull()
    public static var reason: Comment { Comment(rawValue: KernelCounters.timeWaitTableSummary) }
}

extension Trait where Self == ConditionTrait {
    /// Skip (with the table's numbers) when this machine's TIME_WAIT table is nearly full.
    public static var needsTimeWaitRoom: Self { .enabled(if: !TimeWaitRoom.nearlyFull, TimeWaitRoom.reason) }
}
