import SocketKit

/// Wall-clock times for trace events without a clock call or a calendar call per event.
///
/// Every event is stamped once, on CLOCK_MONOTONIC (`ts_ns`). Its RFC 3339 `time` is that
/// stamp plus an offset to CLOCK_REALTIME read once per process, and the calendar date is
/// computed with integer arithmetic (days since the epoch → civil date), not gmtime_r.
/// A wall clock stepped later (NTP, settimeofday) is not followed: `time` stays on the
/// process's first reading, so it always moves with `ts_ns`, never backwards.
package enum TraceTime {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns, read once (two vDSO calls back to back).
    package static let wallOffsetNs: Int64 = MonotonicClock.wallNow() - Int64(bitPattern: MonotonicClock.now())

    /// The wall-clock instant of a CLOCK_MONOTONIC stamp.
    @inline(__always)
    package static func wallNs(monotonic ns: UInt64) -> Int64 { Int64(bitPattern: ns) &+ wallOffsetNs }

    /// `2026-11-23T16:30:01.123456Z` (UTC, microseconds), written into `out`.
    package static func appendRFC3339(_ wallNanos: Int64, to out: inout TraceBytes) {
        var once = RFC3339Second()
        appendRFC3339(wallNanos, to: &out, reusing: &once)
    }

    /// The same, the date and time of day copied from `second` when the stamp falls in the
    /// second written last (a trace's lines mostly do): the calendar arithmetic and 19 digits
    /// were ~300 instructions a JSON line (callgrind, traced server under connect churn).
    package static func appendRFC3339(_ wallNanos: Int64, to out: inout TraceBytes, reusing second: inout RFC3339Second) {
        let seconds = wallNanos >= 0 ? wallNanos / 1_000_000_000 : (wallNanos - 999_999_999) / 1_000_000_000
        let micros = UInt64((wallNanos - seconds * 1_000_000_000) / 1000)
        let fresh = seconds != second.seconds
        var date = (year: Int64(0), month: Int64(0), day: Int64(0)), secondOfDay: UInt64 = 0
        if fresh {
            let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
            secondOfDay = UInt64(seconds - days * 86_400)
            date = civilDate(daysSinceEpoch: days)
        }
        // 27 bytes written in place (one reserve, two digits at a time): seven padded number
        // appends were ~1,000 instructions a JSON line (callgrind).
        out.appendFixed(27) { p in
            func two(_ value: UInt64, at offset: Int) {
                p[offset] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value / 10 % 10)
                p[offset + 1] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
            }
            if fresh {
                let y = UInt64(min(max(0, date.year), 9999))
                two(y / 100, at: 0); two(y % 100, at: 2); p[4] = UInt8(ascii: "-")
                two(UInt64(date.month), at: 5); p[7] = UInt8(ascii: "-")
                two(UInt64(date.day), at: 8); p[10] = UInt8(ascii: "T")
                two(secondOfDay / 3600, at: 11); p[13] = UInt8(ascii: ":")
                two(secondOfDay / 60 % 60, at: 14); p[16] = UInt8(ascii: ":")
                two(secondOfDay % 60, at: 17); p[19] = UInt8(ascii: ".")
                second.seconds = seconds
                withUnsafeMutableBytes(of: &second.text) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: 20)) }
            } else {
                withUnsafeBytes(of: second.text) { UnsafeMutableRawBufferPointer(start: p, count: 20).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
            }
            two(micros / 10_000, at: 20); two(micros / 100 % 100, at: 22); two(micros % 100, at: 24)
            p[26] = UInt8(ascii: "Z")
        }
    }

    /// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
    package static func civilDate(daysSinceEpoch: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

/// The second `TraceTime.appendRFC3339` wrote last, as its first 20 bytes
/// (`2026-11-23T16:30:01.`): the trace writer keeps one under its lock.
package struct RFC3339Second {
    fileprivate var seconds = Int64.min
    fileprivate var text: (UInt64, UInt64, UInt32) = (0, 0, 0)

    package init() {}
}
