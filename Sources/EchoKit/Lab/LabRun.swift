import Glibc
import SocketKit
import TCPTrace
import WireFaults

/// A socket the lab drives: always traced (the lab exists to show the states).
public struct LabEndpoint {
    public let traced: TracedSocket
    public var socket: Socket { traced.socket }
    public var state: TCPState? { traced.state }
    /// The last TCP_INFO read.
    public var lastInfo: TCPInfo? { traced.lastInfo }

    init(_ traced: TracedSocket) throws {
        guard traced.isTraced else { throw ScenarioError("the lab's socket is not traced") }
        self.traced = traced
    }

    /// A note on this socket's trace: what the program does next, what it saw.
    public func info(_ text: String) { traced.info(text) }
}

/// One run of a scenario: both sides' tracers writing into one collector, and the small steps
/// scenarios are made of (listen, connect, accept, send, receive, watch the states).
///
/// Everything runs on the caller's thread except the sock_diag followers, which watch sockets
/// after close() on their own queues.
public final class LabRun {
    public let collector: TraceCollector
    public let client: StateTracer
    public let server: StateTracer
    public let slowMotion: Bool
    /// The wire capture (`--wire`), told every port the scenario uses; nil when off.
    public let wire: WireTracer?
    /// The fault layer (issue 20): the server's sockets in a namespace of their own, joined to
    /// the client's through the relay; nil on the ordinary loopback wire. See LabRun+Faults.
    public internal(set) var faults: FaultWire?
    /// Shows the capture's segments live (LabLiveFeed); `finish()` ends it at the cut.
    var liveFeed: LabLiveFeed?
    /// When `finish()` stopped watching (before its cleanup): where a capture ends.
    public private(set) var stoppedWatchingNs: UInt64?
    /// Live progress for long scenarios (time-wait); nil when nobody watches.
    public let progress: ((String) -> Void)?
    let diag: SockDiag?
    /// Sockets closed abortively (RST, no TIME_WAIT) at the end, after tracing stopped.
    private var leftovers: [Socket] = []
    /// Every endpoint handed out, in order.
    public private(set) var endpoints: [LabEndpoint] = []
    /// States a closed socket may rest in when the lab stops watching (the close-wait-leak
    /// adds FIN_WAIT_2: its client waits there for tcp_fin_timeout).
    public var restingStates: Set<TCPState> = [.timeWait]
    /// Sockets whose fd is closed, followed through sock_diag on this thread until gone.
    let orphans: ClosedSockets
    public let loopback = SocketAddress(numericHost: "127.0.0.1", port: 0)!
    /// Seconds to wait for one step: segments take up to ~100 ms each in slow motion.
    public var stepTimeout: Double { slowMotion ? 8 : 3 }

    /// - Parameter live: also gets every event as it happens (the live lab view).
    public init(slowMotion: Bool, closeWaitWarnSeconds: Double = 1, wire: WireTracer? = nil, progress: ((String) -> Void)? = nil,
                live: TraceSink? = nil) {
        collector = TraceCollector(forwardingTo: live)
        self.wire = wire
        client = StateTracer(sink: collector, side: .client, closeWaitWarnSeconds: closeWaitWarnSeconds)
        server = StateTracer(sink: collector, side: .server, closeWaitWarnSeconds: closeWaitWarnSeconds)
        self.slowMotion = slowMotion
        self.progress = progress
        diag = try? SockDiag()
        orphans = ClosedSockets(diag: diag)
        if slowMotion { SlowMotion.drainBucket() }
    }

    // MARK: Endpoints

    /// A listening socket on a free loopback port: server connection #0.
    public func listener(backlog: Int32 = 16) throws -> LabEndpoint {
        let socket = try onSide(.server) { try Socket.listening(on: serverHost, backlog: backlog) }
        if let wire, let port = try? socket.localAddress().port { wire.watch(port: port) }
        keep(socket)
        return try endpoint(TracedSocket(listening: socket, tracer: server, conn: 0, backlog: backlog, diag: diag(for: .server)))
    }

    /// A fresh socket on `tracer`'s side, optionally bound (for simultaneous open).
    public func socket(_ side: TraceSide, conn: Int, bindTo address: SocketAddress? = nil) throws -> LabEndpoint {
        let socket = try onSide(side) { try Socket(family: AF_INET) }
        keep(socket)
        if let address {
            try socket.setOption(.reuseAddress, true)
            try socket.bind(to: address)
            if let wire, let port = try? socket.localAddress().port { wire.watch(port: port) }
        }
        return try endpoint(TracedSocket(fresh: socket, tracer: side == .client ? client : server, conn: conn, diag: diag(for: side)))
    }

    private func endpoint(_ traced: TracedSocket) throws -> LabEndpoint {
        let endpoint = try LabEndpoint(traced)
        endpoints.append(endpoint)
        return endpoint
    }

    /// Starts a non-blocking connect() and reads the state right after it. A connect that
    /// fails at once (ECONNREFUSED on loopback) is recorded by the socket and rethrown.
    public func startConnect(_ endpoint: LabEndpoint, to address: SocketAddress) throws {
        endpoint.info("connect(\(address)) sends a SYN")
        wire?.watch(port: address.port)
        try endpoint.traced.connect(to: address)
    }

    /// Records a failed call: the errno, a reset in the context, and the state it left. The
    /// error names its call once (`recv: Connection reset by peer (ECONNRESET)`); `when` adds
    /// the moment (`at once`) without naming the call again.
    /// `duringConnect`: connect() failed (SYN_SENT inferred if nothing was seen yet); the lab's
    /// own connect steps have it recorded by the socket already.
    public func failed(_ endpoint: LabEndpoint, _ error: SystemCallError, when: String? = nil, duringConnect: Bool = false) {
        if duringConnect {
            endpoint.traced.connectFailed(error, when: when)
        } else {
            endpoint.traced.failed(error, during: "\(error.call)()", detail: when.map { ", \($0)" } ?? "")
        }
    }

    /// Waits until `endpoint`'s connect completes (ESTABLISHED) and checks SO_ERROR.
    public func finishConnect(_ endpoint: LabEndpoint, to address: SocketAddress, others: [LabEndpoint] = [],
                              timeout: Double? = nil) throws {
        let done = watch([endpoint] + others, timeout: timeout ?? stepTimeout, cause: "sampling while connect() is in progress") {
            endpoint.state == .established || Self.connectFinished(endpoint.socket)
        }
        try endpoint.traced.finishConnect(to: address)
        guard done else { throw ScenarioError("connect() to \(address) did not complete in time") }
    }

    /// poll(POLLOUT) with no wait: a non-blocking connect has finished, well or not. (Reading
    /// SO_ERROR here would clear the error finishConnect() must report.)
    static func connectFinished(_ socket: Socket) -> Bool {
        guard socket.isOpen else { return true }
        var p = pollfd(fd: socket.fd, events: Int16(POLLOUT), revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0
    }

    /// Accepts the next connection as server connection `conn`. The accepted socket was
    /// created by the listener, so its trace starts in LISTEN and the first read
    /// (ESTABLISHED) implies the SYN_RECEIVED the server never sees.
    public func accept(_ listener: LabEndpoint, conn: Int, others: [LabEndpoint] = []) throws -> LabEndpoint {
        var accepted: TracedSocket?
        _ = watch(others, timeout: stepTimeout, cause: "sampling while the server waits in accept()") {
            if let socket = try? listener.traced.accept(tracer: server, conn: conn, diag: diag(for: .server)) {
                accepted = socket
            }
            return accepted != nil
        }
        guard let accepted else { throw ScenarioError("accept() found no connection in time") }
        keep(accepted.socket)
        return try endpoint(accepted)
    }

    // MARK: Data

    public func send(_ endpoint: LabEndpoint, _ text: String) throws {
        var bytes = Array(text.utf8)
        let sent = try bytes.withUnsafeMutableBytes { try endpoint.traced.send(UnsafeRawBufferPointer($0)) }
        guard case .processed(let count) = sent, count == bytes.count else {
            throw ScenarioError("send() of \(bytes.count) bytes did not complete at once")
        }
        endpoint.info("send(\(bytes.count) bytes)")
        endpoint.traced.sample(cause: "after send()")
        bytes.removeAll()
    }

    public struct Received {
        public var bytes: [UInt8] = []
        public var endOfStream = false
        public var error: SystemCallError?
    }

    /// Reads what arrives until `count` bytes, end of stream or an error (bounded by time).
    /// Notes each recv() as it returns (bytes, the peer's FIN as recv() = 0, a reset).
    @discardableResult
    public func receive(_ endpoint: LabEndpoint, count: Int = Int.max, others: [LabEndpoint] = [],
                        timeout: Double? = nil) -> Received {
        var result = Received()
        var buffer = [UInt8](repeating: 0, count: 4096)
        _ = watch([endpoint] + others, timeout: timeout ?? stepTimeout, cause: "sampling while waiting for data") {
            do {
                let outcome = try buffer.withUnsafeMutableBytes {
                    try endpoint.traced.receive(into: $0, finCause: "recv() returned 0: peer sent FIN")
                }
                guard case .processed(let n) = outcome else { return false }
                // One note per recv(), dated at it: a later recv() = 0 (the peer's FIN) must
                // come after the data it followed, not before a summary written at the end.
                endpoint.info(n == 0 ? "recv() = 0: the peer's FIN arrived" : "recv() got \(n) bytes")
                if n == 0 {
                    result.endOfStream = true
                    return true
                }
                result.bytes += buffer[0..<n]
                return result.bytes.count >= count
            } catch let error as SystemCallError {
                result.error = error
                failed(endpoint, error)
                return true
            } catch {
                return true
            }
        }
        return result
    }

    // MARK: Closing

    public func shutdownWrite(_ endpoint: LabEndpoint) throws {
        endpoint.info("shutdown(SHUT_WR) sends a FIN")
        try endpoint.traced.sendFIN(cause: "after shutdown(SHUT_WR)")
    }

    /// close(): from here only sock_diag sees the socket; the lab follows it on this thread.
    public func close(_ endpoint: LabEndpoint, abortive: Bool = false) throws {
        if abortive { try endpoint.traced.setAbortiveClose() }
        endpoint.traced.close(cause: abortive ? "close() with SO_LINGER {1, 0}" : "close()", follow: false)
        endpoint.info(abortive ? "close() with SO_LINGER {1, 0} sends a RST" : "close()")
        orphans.add(endpoint.traced, cause: "sock_diag lookup right after close()")
    }

    // MARK: Watching

    /// Samples each open endpoint's TCP_INFO until `done` holds or `timeout` passes. Spins for
    /// the first milliseconds (transient states last microseconds at real speed), then every
    /// 200 µs. Also emits the CLOSE_WAIT warning when due. Returns whether `done` held.
    @discardableResult
    public func watch(_ endpoints: [LabEndpoint], timeout: Double, cause: String, until done: () -> Bool) -> Bool {
        let start = MonotonicClock.now()
        let deadline = start + UInt64(timeout * 1e9)
        while true {
            for endpoint in endpoints { endpoint.traced.sample(cause: cause) }
            orphans.sample(cause: "sock_diag sample")
            if done() { return true }
            let now = MonotonicClock.now()
            if now >= deadline { return false }
            if now - start > 5_000_000 { usleep(200) }
        }
    }

    /// Waits until `endpoint` reaches `state` (by tcp_info while the fd is open, else by the
    /// follower's sock_diag lookups).
    @discardableResult
    public func wait(_ endpoint: LabEndpoint, for state: TCPState, others: [LabEndpoint] = [],
                     timeout: Double? = nil) -> Bool {
        watch([endpoint] + others, timeout: timeout ?? stepTimeout, cause: "sampling") { endpoint.state == state }
    }

    /// Follows closed sockets until each is gone or in TIME_WAIT (nothing more happens for a
    /// minute), or `timeout` passes.
    public func settle(timeout: Double? = nil) {
        watch([], timeout: timeout ?? stepTimeout, cause: "sock_diag sample") {
            orphans.allRest(in: restingStates)
        }
    }

    /// Lets time pass while sampling everything: an application that does some work before
    /// its next call. Long enough for a delayed ACK (≥ 40 ms) to go out on its own.
    public func pause(_ endpoints: [LabEndpoint], cause: String) {
        watch(endpoints, timeout: slowMotion ? 0.06 : 0.05, cause: cause) { false }
    }

    /// Whether `endpoint`'s closed socket is still followed.
    public func isFollowing(_ endpoint: LabEndpoint) -> Bool { orphans.contains(endpoint.traced) }

    /// Stops tracing and cuts the capture (the scenario's observation ends here), then resets
    /// every socket still open so no run leaves TIME_WAITs or orphans behind for the next one:
    /// those RSTs are the lab's cleanup, not part of the scenario, and are not shown.
    public func finish() {
        settle()
        orphans.finish("when the lab stopped watching")
        client.follower.finish()
        server.follower.finish()
        stoppedWatchingNs = MonotonicClock.now()
        wire?.cut(atNs: stoppedWatchingNs ?? 0, reason: "when the lab stopped watching, before its cleanup reset the leftover sockets")
        liveFeed?.finish(cutNs: stoppedWatchingNs ?? 0)
        for socket in leftovers where socket.isOpen {
            try? socket.setAbortiveClose()
            try? socket.close()
        }
        leftovers.removeAll()
    }

    private func keep(_ socket: Socket) { leftovers.append(socket) }

    /// The last smoothed RTT the client's first connection reported, for the slow-motion line.
    /// The first: in backlog-full a later connection's handshake crosses lo after the tbf bucket
    /// refilled and measures ~1 ms, not the shaped round trip.
    public var measuredRTTMicros: UInt32? {
        let samples = collector.events.filter { $0.side == .client && ($0.info?.rttMicros ?? 0) > 0 }
        guard let first = samples.map(\.conn).min() else { return nil }
        return samples.last { $0.conn == first }?.info?.rttMicros
    }
}
