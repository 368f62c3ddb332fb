import Glibc

/// CLOCK_MONOTONIC in nanoseconds: the one time base of every trace event, so logs from two
/// processes (and the kernel tracepoint, which is configured with the same clock) merge.
public enum MonotonicClock {
    /// CLOCK_MONOTONIC in nanoseconds. C: `clock_gettime(2)`.
    @inline(__always)
    public static func now() -> UInt64 { UInt64(nanoseconds(CLOCK_MONOTONIC)) }

    /// Wall-clock nanoseconds since the epoch (for the RFC 3339 `time` field only).
    public static func wallNow() -> Int64 { nanoseconds(CLOCK_REALTIME) }

    /// CPU time the calling thread has used, in nanoseconds (CLOCK_THREAD_CPUTIME_ID: a system
    /// call, not the vDSO; for measuring, not for stamping).
    public static func threadCPUTime() -> UInt64 { UInt64(nanoseconds(CLOCK_THREAD_CPUTIME_ID)) }

    @inline(__always)
    private static func nanoseconds(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
