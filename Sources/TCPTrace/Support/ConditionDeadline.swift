import Glibc

extension timespec {
    /// The absolute CLOCK_REALTIME time `nanoseconds` from now, as `pthread_cond_timedwait(3)`
    /// takes it (the condition variables here use the default clock). C: `clock_gettime(2)`.
    static func realtimeDeadline(afterNanoseconds nanoseconds: UInt64) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = UInt64(now.tv_nsec) + nanoseconds % 1_000_000_000
        now.tv_sec += Int(nanoseconds / 1_000_000_000 + total / 1_000_000_000)
        now.tv_nsec = Int(total % 1_000_000_000)
        return now
    }
}
