import CSocketKit
import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// Options for `EchoClient`.
public struct EchoClientConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port: UInt16 = 7007
    /// Give up on connect() after this long (nil: the kernel's own SYN retries, ~2 min).
    public var connectTimeoutSeconds: Double? = nil
    /// Give up when the server sends nothing for this long while data is expected.
    public var ioTimeoutSeconds: Double? = nil
    public init() {}
}

/// The echo client: connects, sends, reads the echo, half-closes, drains and closes, tracing
/// its socket's states after each call.
/// Single owner (one client thread): not Sendable.
public final class EchoClient {
    public let configuration: EchoClientConfiguration
    public let tracer: StateTracer?
    public private(set) var socket: Socket?
    public private(set) var tracker: SocketTracker?
    public private(set) var peer: SocketAddress?
    let diag: SockDiag?
    /// When set, a signal interrupts any wait (connect, send, recv) with `ClientInterrupted`.
    public var interruption: ClientInterruption?

    public init(configuration: EchoClientConfiguration, tracer: StateTracer?) {
        self.configuration = configuration
        self.tracer = tracer
        diag = tracer == nil ? nil : try? SockDiag()
    }

    /// Resolves the host and connects to the first address that answers. C: `connect(2)`.
    public func connect() throws {
        try connect(toFirstOf: HostResolver.resolve(configuration.host, port: configuration.port))
    }

    /// Tries each address in turn (a name can resolve to ::1 and 127.0.0.1).
    public func connect(toFirstOf addresses: [SocketAddress]) throws {
        var lastError: Error = ClientError("no address for \(configuration.host)")
        for address in addresses {
            do {
                try connect(to: address)
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    public func connect(to address: SocketAddress) throws {
        let socket = try Socket(family: address.family)
        let tracker = tracer?.track(initial: .closed, diag: diag)
        tracker?.attach(local: nil, peer: address, cookie: try? socket.cookie())
        self.socket = socket
        self.tracker = tracker
        peer = address
        do {
            let started = tracker?.syscallStart()
            let immediate = try socket.connect(to: address)
            tracker?.syscall("connect(fd \(socket.fd), \(address)) = " + (immediate ? "0" : "-1 EINPROGRESS: waiting for POLLOUT"),
                             startedAt: started)
            tracker?.attach(local: try? socket.localAddress(), peer: nil, cookie: nil)
            tracker?.observe(socket, cause: "connect() to \(address)")
            if !immediate {
                try waitFor(POLLOUT, timeout: configuration.connectTimeoutSeconds, what: "connect(\(address))")
                try socket.finishConnect(to: address)
                tracker?.syscall("getsockopt(fd \(socket.fd), SO_ERROR) = 0: connect() completed")
                tracker?.attach(local: try? socket.localAddress(), peer: nil, cookie: nil)
                tracker?.observe(socket, cause: "connect() completed (SO_ERROR 0)")
            }
            try? socket.setOption(.noDelay, true)
        } catch let error as SystemCallError {
            if error.errno == ECONNREFUSED || error.errno == ECONNRESET { tracker?.noteReset() }
            if tracker?.state == .closed { tracker?.infer(.synSent, cause: "connect() sent a SYN") }
            tracker?.error(error)
            let reason = error.errno == ECONNREFUSED ? "the peer answered the SYN with RST" : Errno.message(error.errno)
            tracker?.observe(socket, cause: "\(Errno.name(error.errno)) from connect(): \(reason)")
            try? socket.close()
            tracker?.closed(cause: "close() after a failed connect()")
            self.socket = nil
            throw error
        } catch {
            tracker?.observe(socket, cause: "connect() gave up: \(error)")
            tracker?.warning("\(error)")
            try? socket.close()
            tracker?.closed(cause: "close() after a connect timeout")
            self.socket = nil
            throw error
        }
    }

    /// Waits for `events` on the socket, sampling TCP_INFO on a backoff while the socket is in
    /// a transient state (FIN_WAIT_1, SYN_SENT...), so microsecond states are not only inferred.
    func waitFor(_ events: Int32, timeout: Double?, what: String, extra: Int32 = -1, extraEvents: Int32 = POLLIN) throws {
        guard let socket else { throw SystemCallError(call: "poll", errno: EBADF) }
        let deadline = timeout.map { MonotonicClock.now() + UInt64($0 * 1e9) }
        while true {
            try checkInterrupted()
            var waitNs: UInt64? = tracker?.nextSampleDelayNs()
            if let deadline {
                let now = MonotonicClock.now()
                if now >= deadline {
                    throw ClientError("\(what): timed out after \(timeout!) s", errno: ETIMEDOUT)
                }
                waitNs = min(waitNs ?? .max, deadline - now)
            }
            // poll() skips negative fds: absent entries cost nothing.
            var fds = [pollfd(fd: socket.fd, events: Int16(events), revents: 0),
                       pollfd(fd: extra, events: Int16(extraEvents), revents: 0),
                       pollfd(fd: interruption?.wakeup.fd ?? -1, events: Int16(POLLIN), revents: 0)]
            var spec = timespec(tv_sec: Int(waitNs ?? 0) / 1_000_000_000, tv_nsec: Int(waitNs ?? 0) % 1_000_000_000)
            let count = try syscall("ppoll") {
                withUnsafePointer(to: &spec) { specPointer in
                    CSocketKit_ppoll(&fds, 3, waitNs == nil ? nil : specPointer)
                }
            }
            try checkInterrupted()
            if count > 0 { return }
            if let tracker, let state = tracker.state, state.isTransient {
                tracker.observe(socket, cause: "sampled while in \(state.name)")
            }
        }
    }

    /// Throws `ClientInterrupted` once a termination signal arrived.
    func checkInterrupted() throws {
        if let signal = interruption?.signal { throw ClientInterrupted(signal: signal) }
    }

    /// Sends every byte (waiting for room as needed).
    public func sendAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard let socket else { throw SystemCallError(call: "send", errno: EBADF) }
        var offset = 0
        while offset < bytes.count {
            let started = tracker?.syscallStart()
            switch try socket.send(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
            case .processed(let n):
                tracker?.syscall("send(fd \(socket.fd), \(bytes.count - offset) bytes) = \(n)", startedAt: started)
                tracker?.data("sent", UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
                offset += n
            case .wouldBlock:
                tracker?.syscall("send(fd \(socket.fd), \(bytes.count - offset) bytes) = -1 EAGAIN: send buffer full", startedAt: started)
                try waitFor(POLLOUT, timeout: configuration.ioTimeoutSeconds, what: "send")
            }
        }
    }

    /// One recv(), waiting for data first. Returns 0 at the peer's FIN (traced).
    public func receiveSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let socket else { throw SystemCallError(call: "recv", errno: EBADF) }
        while true {
            let started = tracker?.syscallStart()
            switch try socket.receive(into: buffer) {
            case .processed(let n):
                tracker?.syscall("recv(fd \(socket.fd), \(buffer.count)) = \(n)" + (n == 0 ? ": end of stream" : ""), startedAt: started)
                if n == 0 {
                    tracker?.notePeerFIN()
                    tracker?.observe(socket, cause: "recv()=0: server sent FIN")
                } else if let tracker {
                    tracker.data("received", UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    // Data arriving while our FIN is in flight often carries the ACK that
                    // moves FIN_WAIT_1 on: worth one ~1 µs read.
                    if let state = tracker.state, state != .established {
                        tracker.observe(socket, cause: "recv() returned \(n) bytes")
                    }
                }
                return n
            case .wouldBlock:
                tracker?.syscall("recv(fd \(socket.fd), \(buffer.count)) = -1 EAGAIN: nothing yet", startedAt: started)
                try waitFor(POLLIN, timeout: configuration.ioTimeoutSeconds, what: "recv")
            }
        }
    }

    /// Half-close: our FIN goes out, the fd stays open to read the rest. C: `shutdown(SHUT_WR)`.
    public func halfClose() throws {
        guard let socket else { return }
        // A peer that replies and closes (not an echo server) may have its FIN queued unread:
        // read the state first, or the close would be inferred as ours (FIN_WAIT_1...) when it
        // is the passive one (CLOSE_WAIT → LAST_ACK).
        if tracker?.observe(socket, cause: "read before shutdown(SHUT_WR)") == .closeWait { tracker?.notePeerFIN() }
        try socket.sendFIN(tracedBy: tracker, cause: "shutdown(SHUT_WR): our FIN sent")
    }

    /// Records a failure against the trace, reading the state it left behind.
    public func noteFailure(_ error: Error) {
        guard let tracker else { return }
        if let error = error as? SystemCallError {
            if error.errno == ECONNRESET || error.errno == EPIPE { tracker.noteReset() }
            tracker.error(error)
        } else {
            tracker.warning("\(error)")
        }
        if let socket { tracker.observe(socket, cause: "after the failure") }
    }

    /// Closes the fd; the follower keeps watching the socket (TIME_WAIT...) via sock_diag.
    public func close() {
        guard let socket else { return }
        tracker?.willSendFIN()
        let fd = socket.fd
        let started = tracker?.syscallStart()
        do {
            try socket.close()
            tracker?.syscall("close(fd \(fd)) = 0", startedAt: started)
        } catch {
            tracker?.syscall("close(fd \(fd)): \(error)", startedAt: started)
        }
        tracker?.closed(cause: "close()")
        self.socket = nil
    }
}
