import CSocketKit
import Glibc

/// epoll readiness bits, translated here and nowhere else.
public struct EpollEvents: OptionSet, Sendable {
    /// The EPOLL* bits, as epoll_event.events carries them.
    public let rawValue: UInt32
    /// Wraps raw EPOLL* bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = EpollEvents(rawValue: EPOLLIN.rawValue)
    public static let writable = EpollEvents(rawValue: EPOLLOUT.rawValue)
    /// The peer sent FIN (or shut down writing): a state change worth reading at once.
    public static let readHangup = EpollEvents(rawValue: EPOLLRDHUP.rawValue)
    public static let hangup = EpollEvents(rawValue: EPOLLHUP.rawValue)
    public static let error = EpollEvents(rawValue: EPOLLERR.rawValue)
    /// Wake only one (or a few) of the epoll instances watching a shared descriptor. ADD only.
    public static let exclusive = EpollEvents(rawValue: EPOLLEXCLUSIVE.rawValue)
}

/// An epoll instance; user data is a 64-bit token (a connection slot), never a pointer.
/// Single owner (one event loop): not Sendable.
public final class Epoll {
    public let fd: Int32
    // Used by the owning loop thread only: no dynamic exclusivity check per event.
    @exclusivity(unchecked) private var buffer: [epoll_event]

    /// C: `epoll_create1(EPOLL_CLOEXEC)`.
    public init(capacity: Int = 256) throws {
        fd = try syscall("epoll_create1") { CSocketKit_epoll_create1(Int32(EPOLL_CLOEXEC)) }
        buffer = [epoll_event](repeating: epoll_event(), count: capacity)
    }

    deinit { Glibc.close(fd) }

    /// C: `epoll_ctl(ADD)`.
    public func add(_ descriptor: Int32, events: EpollEvents, token: UInt64) throws {
        try control(EPOLL_CTL_ADD, "epoll_ctl(ADD)", descriptor, events, token)
    }

    /// C: `epoll_ctl(MOD)`.
    public func modify(_ descriptor: Int32, events: EpollEvents, token: UInt64) throws {
        try control(EPOLL_CTL_MOD, "epoll_ctl(MOD)", descriptor, events, token)
    }

    /// C: `epoll_ctl(DEL)`. ENOENT/EBADF are ignored: closing an fd already removes it.
    public func remove(_ descriptor: Int32) {
        var event = epoll_event()
        _ = CSocketKit_epoll_ctl(fd, EPOLL_CTL_DEL, descriptor, &event)
    }

    private func control(_ op: Int32, _ call: StaticString, _ descriptor: Int32, _ events: EpollEvents, _ token: UInt64) throws {
        var event = epoll_event()
        event.events = events.rawValue
        event.data.u64 = token
        _ = try syscall(call) { CSocketKit_epoll_ctl(fd, op, descriptor, &event) }
    }

    /// Waits up to `timeoutMillis` (-1: forever) and calls `body` per ready descriptor.
    /// EINTR (a signal) returns as a wakeup with no events. C: `epoll_wait(2)`.
    public func wait(timeoutMillis: Int32, _ body: (UInt64, EpollEvents) throws -> Void) throws -> Int {
        let capacity = Int32(buffer.count)
        let count = CSocketKit_epoll_wait(fd, &buffer, capacity, timeoutMillis)
        if count < 0 {
            let code = errno
            if code == EINTR { return 0 }
            throw SystemCallError(call: "epoll_wait", errno: code)
        }
        for index in 0..<Int(count) {
            let event = buffer[index]
            try body(event.data.u64, EpollEvents(rawValue: event.events))
        }
        return Int(count)
    }
}

/// An eventfd used to wake an event loop from another thread or a signal handler.
public final class WakeupFD: Sendable {
    public let fd: Int32

    /// C: `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    public init() throws {
        fd = try syscall("eventfd") { CSocketKit_eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { Glibc.close(fd) }

    /// Async-signal-safe. A full counter (EAGAIN) already means "wake up", so it is not an error.
    public func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    /// Clears pending wakeups.
    public func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }
}
