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

    /// RFC 3339 UTC with microseconds: `2026-11-23T16:30:01.123456Z`.
    public static func rfc3339(wallNanos: Int64) -> String {
        var seconds = time_t(wallNanos / 1_000_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let micros = Int((wallNanos % 1_000_000_000) / 1000)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let microText = String(micros)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - microText.count) + microText + "Z"
    }
}
