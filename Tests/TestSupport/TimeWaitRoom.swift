import TestSupport
import Testing
import TCPTrace

/// Tests expecting a TIME_WAIT skip, with the numbers, when Linux would give none (its table is
/// full, e.g. within a minute of a connect/close benchmark) instead of failing on real behaviour.
public enum TimeWaitRoom {
    public static let nearlyFull = KernelCounters.timeWaitTableNearlyFull()
    public static var reason: Comment { Comment(rawValue: KernelCounters.timeWaitTableSummary) }
}
