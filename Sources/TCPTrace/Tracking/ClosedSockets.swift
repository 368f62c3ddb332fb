import SocketKit

/// Sockets whose fd is closed, followed through sock_diag on the caller's own thread, one
/// lookup (~5 µs) per socket per `sample`, until each is gone from the kernel's table.
///
/// For a program that samples faster than the `SockDiagFollower`'s backoff and must not race
/// with it (the scenario lab closes with `close(follow: false)` and hands the tracker here).
public final class ClosedSockets {
    private let diag: SockDiag?
    private var trackers: [SocketTracker] = []
    /// sock_diag for the server's sockets when they live in a network namespace of their own
    /// (the fault wire): a netlink socket sees only its own namespace.
    public var serverDiag: SockDiag?

    private func diag(for tracker: SocketTracker) -> SockDiag? {
        tracker.tracer.side == .server ? serverDiag ?? diag : diag
    }

    public init(diag: SockDiag?) {
        self.diag = diag
    }

    /// Follows `socket`'s tracker after close(), with a first lookup at once; a socket already
    /// CLOSED needs no following.
    public func add(_ socket: TracedSocket, cause: String) {
        guard let tracker = socket.tracker, tracker.state != .closed else { return }
        trackers.append(tracker)
        sample(cause: cause)
    }

    /// One lookup per followed socket; drops those that are gone.
    public func sample(cause: String) {
        guard !trackers.isEmpty else { return }
        trackers.removeAll { tracker in
            guard let local = tracker.local, let peer = tracker.peer else { return true }
            guard let diag = diag(for: tracker) else { return false }
            let entry: SockDiagEntry?
            do {
                entry = try diag.lookup(local: local, peer: peer, cookie: tracker.cookie,
                                        expectingTimeWait: tracker.expectsTimeWait)
            } catch {
                return false   // a failed lookup says nothing about the socket: ask again next sample
            }
            guard let entry else {
                tracker.followed(nil, cause: "gone from the kernel's socket table (\(cause))")
                return true
            }
            tracker.followed(entry, cause: cause)
            return false
        }
    }

    /// Whether `socket` (closed) is still followed: not yet gone from the kernel's table.
    public func contains(_ socket: TracedSocket) -> Bool { trackers.contains { $0 === socket.tracker } }

    /// Whether every followed socket rests in one of `states` (nothing more happens for a while).
    public func allRest(in states: Set<TCPState>) -> Bool {
        trackers.allSatisfy { states.contains($0.state ?? .closed) }
    }

    /// Stops following: each socket still in the kernel gets an `info` line saying so.
    public func finish(_ when: String) {
        for tracker in trackers { tracker.reportStillInKernel(when, diag: diag(for: tracker)) }
        trackers.removeAll()
    }
}
