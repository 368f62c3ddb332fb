import Glibc

/// CLOCK_MONOTONIC in nanoseconds: the one time base of every trace event, so logs from two
/// processes (and the kernel tracepoint, which is configured with the same clock) merge.
public enum MonotonicClock {
    @inline(__always)
    /// CLOCK_MONOTONIC in nanoseconds: the trace's time scale (the kernel tracepoint uses it too). C: `clock_gettime(2)`.
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Wall-clock nanoseconds since the epoch (for the RFC 3339 `time` field only).
    public static func wallNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
