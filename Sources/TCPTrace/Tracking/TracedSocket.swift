import Glibc
import SocketKit

/// A socket that records what each of its calls can change in TCP's state machine.
///
/// Engines call the plain socket methods (`connect`, `accept`, `send`, `receive`, `sendFIN`,
/// `close`) and read like the classic C echo pair; whether anything is traced depends only on
/// how the socket was made. Without a tracker every method is the SocketKit call plus one nil
/// test, so the untraced server pays nothing else. With one, each method makes the call, then
/// records what that call can change: the state read with TCP_INFO, the FIN noted (ours or the
/// peer's), a reset, an error, and, with `--trace-verbose`, the syscall and data lines.
///
/// A value type: copying it copies two references, never the socket. Owned by one thread, like
/// the `Socket` and the `SocketTracker` it holds.
public struct TracedSocket {
    public let socket: Socket
    /// nil: tracing is off for this socket.
    public let tracker: SocketTracker?

    /// Wraps `socket`; `tracker` (if any) must be this socket's.
    public init(_ socket: Socket, tracker: SocketTracker? = nil) {
        self.socket = socket
        self.tracker = tracker
    }

    public var fd: Int32 { socket.fd }
    public var isTraced: Bool { tracker != nil }
    public var isOpen: Bool { socket.isOpen }
    /// The last state the trace reached; nil untraced.
    public var state: TCPState? { tracker?.state }
    /// The last TCP_INFO read; nil untraced.
    public var lastInfo: TCPInfo? { tracker?.lastInfo }
    /// Which side's tracer records it, and its connection number; nil untraced.
    public var side: TraceSide? { tracker?.tracer.side }
    public var conn: Int? { tracker?.conn }

    // MARK: Making one

    /// A fresh socket's trace starts in CLOSED (known by construction, not emitted). A bound
    /// socket (simultaneous open) is attached to its local address now; a connecting one learns
    /// it in `connect`.
    public init(fresh socket: Socket, tracer: StateTracer?, conn: Int? = nil, diag: SockDiag?) {
        self.socket = socket
        tracker = tracer?.track(initial: .closed, conn: conn, diag: diag)
        guard let tracker else { return }
        let local = try? socket.localAddress()
        tracker.attach(local: local?.port == 0 ? nil : local, peer: nil, cookie: tracker.tracer.eagerCookies ? try? socket.cookie() : nil)
    }

    /// A listening socket: the LISTEN state read right after listen().
    public init(listening socket: Socket, tracer: StateTracer?, conn: Int? = nil, backlog: Int32, diag: SockDiag?,
                mailbox: KernelMailbox? = nil) {
        self.socket = socket
        tracker = tracer?.track(initial: .closed, conn: conn, diag: diag, mailbox: mailbox)
        guard let tracker else { return }
        tracker.attach(local: try? socket.localAddress(), peer: nil, cookie: try? socket.cookie())
        tracker.observe(socket, cause: "listen(backlog \(backlog))")
    }

    /// A connection accept() returned. It was created by the listener, so its trace starts in
    /// LISTEN; the SYN_RECEIVED the program never sees is inferred, then the state is read.
    public init(accepted socket: Socket, tracer: StateTracer?, conn: Int? = nil, diag: SockDiag?,
                mailbox: KernelMailbox? = nil, cause: String = "accept()") {
        self.socket = socket
        tracker = tracer?.track(initial: .listen, conn: conn, diag: diag, mailbox: mailbox)
        guard let tracker else { return }
        tracker.attach(socket)
        // Linked to the kernel's reports (they came with registering), the kernel's own
        // LISTEN → SYN_RECEIVED is in the inbox: nothing to infer.
        if !tracker.isKernelLinked {
            tracker.infer(.synReceived, cause: "SYN arrived on the listener; the kernel finished the handshake before accept() returned")
        }
        tracker.observe(socket, cause: cause)
    }

    // MARK: The calls

    /// C: `connect(2)`. True when connected at once, false in progress (then `finishConnect`).
    /// A failure is recorded (a refusal or reset noted, SYN_SENT inferred if nothing was seen,
    /// the error, the state it left) and rethrown.
    @discardableResult
    public func connect(to address: SocketAddress, cause: @autoclosure () -> String = "right after connect()") throws -> Bool {
        let started = tracker?.syscallStart()
        let immediate: Bool
        do {
            immediate = try socket.connect(to: address)
        } catch let error as SystemCallError {
            tracker?.attach(local: try? socket.localAddress(), peer: address, cookie: nil)
            connectFailed(error, when: "at once")
            throw error
        }
        guard let tracker else { return immediate }
        tracker.syscall("connect(fd \(fd), \(address)) = " + (immediate ? "0" : "-1 EINPROGRESS: waiting for POLLOUT"),
                        startedAt: started)
        tracker.attach(local: try? socket.localAddress(), peer: address, cookie: nil)
        tracker.observe(socket, cause: cause())
        return immediate
    }

    /// After a non-blocking connect completed: SO_ERROR, thrown as connect's errno (recorded).
    public func finishConnect(to address: SocketAddress) throws {
        do {
            try socket.finishConnect(to: address)
        } catch let error as SystemCallError {
            connectFailed(error, when: "when it completed")
            throw error
        }
        guard let tracker else { return }
        tracker.syscall("getsockopt(fd \(fd), SO_ERROR) = 0: connect() completed")
        tracker.attach(socket)
        tracker.observe(socket, cause: "connect() completed (SO_ERROR 0)")
    }

    /// Records a failed connect (`connect`/`finishConnect` do it themselves): a refusal or reset
    /// noted, SYN_SENT inferred if no state was seen, the error, the state it left.
    public func connectFailed(_ error: SystemCallError, when: String? = nil) {
        guard let tracker else { return }
        if [ECONNREFUSED, ECONNRESET].contains(error.errno) { tracker.noteReset() }
        // connect() failed before any state was seen: the SYN went out, so SYN_SENT was crossed.
        if tracker.state == .closed, !tracker.hasEmittedState {
            tracker.infer(.synSent, cause: "connect() sent a SYN before it failed")
        }
        tracker.error(error, cause: "\(error)" + (when.map { ", \($0)" } ?? ""))
        let reason = error.errno == ECONNREFUSED ? "the peer answered the SYN with RST" : Errno.message(error.errno)
        tracker.observe(socket, cause: "\(Errno.name(error.errno)) from connect(): \(reason)")
    }

    /// C: `accept4(2)` on a listener; nil when no connection is waiting. The connection is
    /// traced by `tracer` (see `init(accepted:)`).
    public func accept(tracer: StateTracer?, conn: Int? = nil, diag: SockDiag?,
                       cause: String = "accept() returned the connection") throws -> TracedSocket? {
        guard case .processed(let child) = try socket.accept() else { return nil }
        return TracedSocket(accepted: child, tracer: tracer, conn: conn, diag: diag, cause: cause)
    }

    /// C: `send(2)`. Verbose: the call and the bytes that went.
    public func send(_ bytes: UnsafeRawBufferPointer) throws -> IOResult<Int> {
        let started = tracker?.syscallStart()
        let result = try socket.send(bytes)
        guard let tracker, tracker.tracer.verbose else { return result }
        switch result {
        case .processed(let n):
            tracker.syscall("send(fd \(fd), \(bytes.count) bytes) = \(n)", startedAt: started)
            tracker.data("sent", UnsafeRawBufferPointer(rebasing: bytes[0..<n]))
        case .wouldBlock:
            tracker.syscall("send(fd \(fd), \(bytes.count) bytes) = -1 EAGAIN: send buffer full", startedAt: started)
        }
        return result
    }

    /// C: `recv(2)`. `.processed(0)` is the peer's FIN: noted, and the state read (CLOSE_WAIT,
    /// or TIME_WAIT when ours went first). Data while our FIN is in flight often carries the
    /// ACK that moves FIN_WAIT_1 on: worth one ~1 µs read then.
    public func receive(into buffer: UnsafeMutableRawBufferPointer,
                        finCause: @autoclosure () -> String = "recv()=0: peer sent FIN") throws -> IOResult<Int> {
        let started = tracker?.syscallStart()
        let result = try socket.receive(into: buffer)
        guard let tracker, case .processed(let n) = result else {
            if let tracker {
                tracker.syscall("recv(fd \(fd), \(buffer.count)) = -1 EAGAIN: nothing yet", startedAt: started)
            }
            return result
        }
        tracker.syscall("recv(fd \(fd), \(buffer.count)) = \(n)" + (n == 0 ? ": end of stream" : ""), startedAt: started)
        if n == 0 {
            tracker.notePeerFIN()
            tracker.observe(socket, cause: finCause())
        } else {
            tracker.data("received", UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            if let state = tracker.state, state != .established, state != .closeWait {
                tracker.observe(socket, cause: "recv() returned \(n) bytes")
            }
        }
        return result
    }

    /// Sends our FIN with `shutdown(SHUT_WR)`, in the one order that keeps the trace right: the
    /// state read first unless the peer's FIN is known (a FIN queued unread makes us the passive
    /// closer: CLOSE_WAIT → LAST_ACK, not FIN_WAIT_1), the TIME_WAIT overflow baseline before
    /// the call (on loopback the whole close can finish inside it), the FIN noted after it
    /// succeeded, then the state read while the fd still exists (FIN_WAIT_1/2, LAST_ACK or
    /// already CLOSED). C: `shutdown(SHUT_WR)`, then `getsockopt(TCP_INFO)`.
    public func sendFIN(cause: @autoclosure () -> String = "shutdown(SHUT_WR): our FIN sent") throws {
        readBeforeOurFIN("read before shutdown(SHUT_WR)", closing: false)
        let started = tracker?.syscallStart()
        try socket.shutdown(.write)
        guard let tracker else { return }
        tracker.syscall("shutdown(fd \(fd), SHUT_WR) = 0", startedAt: started)
        tracker.noteOurFIN()
        tracker.observe(socket, cause: cause())
    }

    /// C: `shutdown(SHUT_RDWR)` on a listener: new connections are refused at once, and the
    /// listener reads CLOSED while the fd is still open for TCP_INFO.
    public func stopAccepting(cause: String = "shutdown(SHUT_RDWR): stopped accepting") throws {
        try socket.shutdown(.both)
        tracker?.observe(socket, cause: cause)
    }

    /// SO_LINGER {1, 0}: the next `close()` sends a RST, not a FIN (a reset in the trace).
    public func setAbortiveClose() throws {
        try socket.setAbortiveClose()
        tracker?.noteReset()
    }

    /// C: `close(2)`. From here only sock_diag sees the socket (LAST_ACK, orphaned FIN_WAIT,
    /// TIME_WAIT): the tracer's follower watches it on its own queue unless `follow` is false
    /// (the caller follows it itself, see `ClosedSockets`). Never blocks the caller.
    /// A failing close(2) (EBADF, EIO) is reported in the trace; the fd is gone either way.
    public func close(cause: String = "close()", follow: Bool = true) {
        guard socket.isOpen else { return }
        readBeforeOurFIN("read before close()", closing: true)
        let descriptor = fd
        let started = tracker?.syscallStart()
        do {
            try socket.close()
            tracker?.syscall("close(fd \(descriptor)) = 0", startedAt: started)
        } catch let error as SystemCallError {
            tracker?.error(error, cause: "close(fd \(descriptor)): \(error)")
        } catch {
            tracker?.warning("close(fd \(descriptor)): \(error)")
        }
        tracker?.closed(cause: cause, follow: follow)
    }

    private func readBeforeOurFIN(_ cause: String, closing: Bool) {
        guard let tracker else { return }
        if !tracker.sentFIN, !tracker.peerFINSeen, !tracker.fdClosed, tracker.observe(socket, cause: cause) == .closeWait {
            tracker.notePeerFIN()
        }
        tracker.willSendFIN()
        tracker.keepCookie(of: socket, closing: closing)
    }

    // MARK: Failures and time

    /// Records a failure of this socket: `error`, or when nil the pending SO_ERROR (EPOLLERR),
    /// a reset noted for ECONNRESET/ECONNREFUSED/EPIPE, and the state it left. `detail` is added
    /// to the error's line. Returns the error recorded (nil: none was pending).
    @discardableResult
    public func failed(_ error: SystemCallError?, during call: String, detail: String = "") -> SystemCallError? {
        var error = error
        if error == nil, let code = try? socket.getOption(.error), code != 0 {
            error = SystemCallError(call: call, errno: code)
        }
        guard let tracker else { return error }
        if let error {
            if [ECONNRESET, ECONNREFUSED, EPIPE].contains(error.errno) { tracker.noteReset() }
            tracker.error(error, cause: "\(error)\(detail)")
            tracker.observe(socket, cause: "\(Errno.name(error.errno)) from \(call)")
        } else {
            tracker.warning("\(call) without a pending socket error\(detail)")
            tracker.observe(socket, cause: call)
        }
        return error
    }

    /// Reads the state now: a sample while waiting (transient states last microseconds), and
    /// the CLOSE_WAIT warning when due (`detail`: what the application is doing).
    public func sample(cause: @autoclosure () -> String, now: UInt64 = MonotonicClock.now(), closeWaitDetail: String? = nil) {
        guard let tracker, socket.isOpen else { return }
        tracker.observe(socket, cause: cause())
        tracker.checkCloseWait(now: now, detail: closeWaitDetail)
    }

    /// Samples only while in a transient state (SYN_SENT, FIN_WAIT_1...): a wait that timed out.
    public func sampleIfTransient() {
        guard let tracker, let state = tracker.state, state.isTransient, socket.isOpen else { return }
        tracker.observe(socket, cause: "sampled while in \(state.name)")
    }

    /// While in a transient state: how long to wait before the next sample (20 µs, doubling to
    /// 100 ms). nil when the state only changes with an fd event, or untraced.
    public func nextSampleDelayNs() -> UInt64? { tracker?.nextSampleDelayNs() }

    /// When this socket next needs a look (CLOCK_MONOTONIC ns): a transient state is sampled on
    /// a backoff (20 µs doubling to 100 ms), CLOSE_WAIT warned about once. nil: only fd events.
    public func nextCheck(now: UInt64) -> UInt64? {
        guard let tracker else { return nil }
        var deadline = nextSampleDelayNs().map { now + $0 }
        if let warn = tracker.closeWaitDeadline { deadline = min(deadline ?? warn, warn) }
        return deadline
    }

    // MARK: The kernel's table

    /// Names both ends before connect() (simultaneous open: each side knows its peer's port
    /// already), so the wire's segments and sock_diag lookups find this socket.
    public func attach(local: SocketAddress, peer: SocketAddress) {
        tracker?.attach(local: local, peer: peer, cookie: nil)
    }

    /// What the kernel's socket table holds for this connection now (sock_diag by its four-tuple
    /// and cookie), or nil: untraced, no sock_diag, addresses unknown, or not in the table.
    /// After close() the socket lives on there (FIN_WAIT_2, TIME_WAIT).
    public func kernelEntry(using diag: SockDiag?, expectingTimeWait: Bool = false) throws -> SockDiagEntry? {
        guard let tracker, let diag, let local = tracker.local, let peer = tracker.peer else { return nil }
        return try diag.lookup(local: local, peer: peer, cookie: tracker.cookie, expectingTimeWait: expectingTimeWait)
    }

    /// An `info` line with a kernel timer `entry` shows (TIME_WAIT's time left, sock_diag
    /// idiag_expires), dated now, from the state the entry is in.
    public func timer(_ entry: SockDiagEntry, cause: String) {
        guard let tracker else { return }
        var event = tracker.makeEvent(.info, cause: cause)
        event.from = entry.state
        event.timerMs = entry.expiresMs
        tracker.tracer.emit(event)
    }

    // MARK: Notes

    /// An event of this socket (its side, connection and addresses), dated now and not emitted:
    /// for a caller that completes it (the client's verdict). nil untraced.
    public func event(_ kind: TraceEvent.Kind, cause: String) -> TraceEvent? { tracker?.makeEvent(kind, cause: cause) }

    /// An `info` line on this socket's trace (what the program is about to do, a count).
    public func info(_ text: @autoclosure () -> String) { tracker?.info(text()) }
    /// A `warning` line on this socket's trace.
    public func warning(_ text: @autoclosure () -> String) { tracker?.warning(text()) }
    /// A verbose-only note (`--trace-verbose`), dated now.
    public func verboseNote(_ text: @autoclosure () -> String) { tracker?.syscall(text()) }
}
