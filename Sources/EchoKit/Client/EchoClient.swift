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

/// The echo client: connects, sends, reads the echo, half-closes, drains and closes. Its socket
/// records its own states when tracing is on (`TracedSocket`).
/// Single owner (one client thread): not Sendable.
public final class EchoClient {
    public let configuration: EchoClientConfiguration
    public let tracer: StateTracer?
    /// The last connection's socket (kept after close(): the verdict event is that connection's).
    public private(set) var socket: TracedSocket?
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

    /// C: `socket`, `connect`, `poll(POLLOUT)`, `getsockopt(SO_ERROR)`. A failed connect is
    /// recorded by the socket; a timeout here.
    public func connect(to address: SocketAddress) throws {
        let socket = TracedSocket(fresh: try Socket(family: address.family), tracer: tracer, diag: diag)
        self.socket = socket
        peer = address
        do {
            if try !socket.connect(to: address, cause: "connect() to \(address)") {
                try waitFor(POLLOUT, timeout: configuration.connectTimeoutSeconds, what: "connect(\(address))")
                try socket.finishConnect(to: address)
            }
            try? socket.socket.setOption(.noDelay, true)
        } catch {
            if !(error is SystemCallError) { noteFailure(error) }
            close(cause: "close() after a failed connect()")
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
            var waitNs: UInt64? = socket.nextSampleDelayNs()
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
            socket.sampleIfTransient()
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
            switch try socket.send(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
            case .processed(let n): offset += n
            case .wouldBlock: try waitFor(POLLOUT, timeout: configuration.ioTimeoutSeconds, what: "send")
            }
        }
    }

    /// One recv(), waiting for data first. Returns 0 at the peer's FIN.
    public func receiveSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let socket else { throw SystemCallError(call: "recv", errno: EBADF) }
        while true {
            switch try socket.receive(into: buffer, finCause: "recv()=0: server sent FIN") {
            case .processed(let n): return n
            case .wouldBlock: try waitFor(POLLIN, timeout: configuration.ioTimeoutSeconds, what: "recv")
            }
        }
    }

    /// Half-close: our FIN goes out, the fd stays open to read the rest. C: `shutdown(SHUT_WR)`.
    public func halfClose() throws {
        try socket?.sendFIN()
    }

    /// Records a failure against the trace, with the state it left behind.
    public func noteFailure(_ error: Error) {
        guard let socket else { return }
        if let error = error as? SystemCallError {
            socket.failed(error, during: error.call)
        } else {
            socket.warning("\(error)")
            socket.sample(cause: "after the failure")
        }
    }

    /// Closes the fd; the follower keeps watching the socket (TIME_WAIT...) via sock_diag.
    public func close(cause: String = "close()") {
        socket?.close(cause: cause)
    }
}
