import Glibc
import SocketKit

extension MonotonicClock {
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
