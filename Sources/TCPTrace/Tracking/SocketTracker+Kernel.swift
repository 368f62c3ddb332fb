import SocketKit

/// How a tracker uses the `tracepoint` source (see TracepointSource.swift).
///
/// Once the router has attributed a kernel change to the socket ("linked"), the kernel is the
/// authority on every full-socket transition: tcp_info readings become confirmations only,
/// inference is not needed, and sock_diag only adds what the tracepoint never reports — the
/// TIME_WAIT mini-socket and its expiry. Every observation first applies pending kernel changes,
/// so an observation can never be emitted before the kernel's event for the same transition.
extension SocketTracker: KernelChangeReceiver {
    /// Learned addresses: let the source attribute this socket's kernel changes.
    func registerWithKernel() {
        guard let kernel, !kernel.registered, let local else { return }
        // A client learns its local address only after connect(); a listener has no peer.
        kernel.registered = true
        kernel.source.register(self, link: kernel, local: local, peer: peer)
    }

    /// Whether kernel changes are being attributed to this socket.
    public var isKernelLinked: Bool { kernel?.isLinked ?? false }

    /// Drains the kernel rings and applies the changes routed to this socket, in kernel order,
    /// with the kernel's timestamps. Call on the owner thread.
    ///
    /// - Parameter observing: the state an fd reading just showed (nil: no reading, the newest
    ///   change) and the program's call that read it; the kernel's transition into that state
    ///   keeps the program's cause too, so the log says both what the kernel did and which call
    ///   of ours it belongs to.
    public func applyKernelEvents(observing: (state: TCPState?, cause: String)? = nil) {
        guard let kernel else { return }
        kernel.source.sync(applying: kernel)
        applyInbox(kernel, observing: observing)
    }

    /// Applies what the router already put in the inbox, without draining the rings: for the
    /// mailbox's wake-ups, which observe nothing (the rings are drained before every observation).
    package func applyRoutedKernelEvents() {
        guard let kernel else { return }
        applyInbox(kernel, observing: nil)
    }

    private func applyInbox(_ kernel: KernelLink, observing: (state: TCPState?, cause: String)?) {
        guard kernel.hasWaitingChanges else { return }
        kernel.takeChanges { taken in
            var changes = taken
            // Hand-outs from different drains can interleave CPUs' times; one batch is in order.
            if zip(changes, changes.dropFirst()).contains(where: { $0.timestampNs > $1.timestampNs }) {
                changes.sort { $0.timestampNs < $1.timestampNs }
            }
            let observedIndex = observing.flatMap { seen in
                seen.state.map { state in changes.lastIndex { TCPState(kernel: $0.newState) == state } } ?? changes.indices.last
            }
            for index in changes.indices {
                let change = changes[index]
                // Another CPU may publish an earlier change of this socket after its ring was
                // read (order holds only within a batch): a young change that does not continue
                // the chain waits for the next drain. The clock is read only then (once per
                // batch it was three vDSO calls a connection).
                if let last = kernel.kernelState, change.oldState != last, MonotonicClock.now() &- change.timestampNs < 2_000_000 {
                    kernel.putBack(UnsafeBufferPointer(rebasing: changes[index...]))
                    return
                }
                apply(change, kernel: kernel, programCause: index == observedIndex ? observing?.cause : nil)
            }
        }
    }

    private func apply(_ change: KernelStateChange, kernel: KernelLink, programCause: String?) {
        kernel.kernelState = change.newState
        lastKernelChangeNs = change.timestampNs
        let to = TCPState(kernel: change.newState)
        let from = TCPState(kernel: change.oldState)
        // tcp_time_wait() hashes a TIME_WAIT mini-socket, then destroys the full socket: the
        // tracepoint reports X→CLOSE. Ask sock_diag whether a mini-socket took over.
        if change.newState == KernelTCPState.close.rawValue,
           [KernelTCPState.finWait1, .finWait2, .closing].contains(where: { $0.rawValue == change.oldState }), let entry = timeWaitMiniSocket(using: kernel.diag) {
            // Stamped with the kernel's time: the mini-socket was hashed just before the full
            // socket's CLOSE; sock_diag confirms it exists (and gives its timer).
            exact(from, .timeWait, source: .sockDiag,
                  cause: "the kernel closed the full socket in \(from.name) (tracepoint) and sock_diag shows the connection in its TIME_WAIT mini-socket",
                  at: change.timestampNs, timerMs: entry.expiresMs)
            return
        }
        exact(from, to, source: .tracepoint, cause: Self.kernelCause(from, to, context: context), seenAt: programCause,
              at: change.timestampNs, timerMs: nil)
    }

    /// A transition the kernel reported: emitted as is when it continues the trace (flagged if
    /// RFC 9293 does not allow it); after a gap (lost records), the usual inference fills it.
    private func exact(_ from: TCPState, _ to: TCPState, source: ObservationSource, cause: String, seenAt: String? = nil,
                       at now: UInt64, timerMs: UInt32?) {
        guard to != state else { return }
        if state == from || state == nil {
            emitState(to, source: source, cause: cause, seenAt: seenAt, at: now, info: nil, timerMs: timerMs,
                      unexpected: !(state.map { TCPStateMachine.allows($0, to) } ?? true))
        } else {
            // After a gap (rare): inference names the cause in its own words, so join it here.
            recordObserved(to, source: source, cause: seenAt.map { cause + "; seen at " + $0 } ?? cause, at: now,
                           info: nil, timerMs: timerMs)
        }
    }

    /// How long the tracepoint may say nothing of a socket before sock_diag's later state is
    /// taken instead: far longer than a drain takes to bring a change (the reader drains every
    /// 10 ms, every observation before it reads), far shorter than a test's or a reader's patience.
    static let kernelSilenceNs: UInt64 = 200_000_000

    /// What the kernel's transition means, for the trace line: whole literals, not built per
    /// event (the interpolation was ~1,100 instructions a change under connect churn, callgrind).
    /// They do not name the tracepoint: the event's source does (`[tracepoint…]`, ▲, `"source"`);
    /// a " (kernel sock:inet_sock_set_state)" on every cause was 15% of a traced connection's
    /// text, written to the trace and copied for nothing.
    static func kernelCause(_ from: TCPState, _ to: TCPState, context: TCPStateMachine.Context) -> String {
        switch (from, to) {
        case (.closed, .listen): return "listen()"
        case (.closed, .synSent): return "connect(): SYN sent"
        case (.synSent, .established): return "SYN+ACK received, ACK sent"
        case (.listen, .synReceived):
            // Linux answers a SYN from a request socket and creates the connection's own socket
            // only when the final ACK arrives: the tracepoint fires then, late for this state.
            // (Every connection's line says it: kept short, 85 bytes, not 113.)
            return "since the SYN (in a request socket); reported when the final ACK created this socket"
        case (.synReceived, .established): return "handshake complete"
        case (.established, .finWait1): return "our FIN sent"
        case (.established, .closeWait): return "peer's FIN arrived"
        case (.finWait1, .finWait2): return "peer ACKed our FIN"
        case (.finWait1, .closing): return "peer's FIN crossed ours"
        case (.closeWait, .lastAck): return "our FIN sent after the peer's"
        case (.lastAck, .closed): return "peer ACKed our FIN: connection closed"
        case (.listen, .closed): return "listener closed"
        case (.synSent, .closed):
            return context.reset ? "connect() refused: the peer answered with RST"
                : "connect() gave up (RST or timeout)"
        case (_, .closed):
            return context.reset ? "connection reset or aborted"
                : "socket closed"
        default: return "state change"
        }
    }

    /// Decides whether a non-tracepoint observation may be recorded when the kernel source is
    /// on. Applies pending kernel changes first, so the kernel's event always comes first.
    func kernelAllows(_ to: TCPState, source: ObservationSource) -> Bool {
        applyKernelEvents()
        guard isKernelLinked else { return true }
        switch source {
        case .tracepoint: return true
        case .sockDiag:
            // The tracepoint never sees the TIME_WAIT mini-socket: sock_diag reports it and its
            // end. Anything else it shows was read before the drain: older than the kernel's news,
            // unless the kernel has said nothing of this socket for a while although its table
            // shows a later state. Then a change the tracepoint reported did not reach us (seen
            // under load: an orphan in FIN_WAIT_2 by sock_diag for seconds, the tracker still in
            // FIN_WAIT_1; docs/RELIABILITY.md): sock_diag's reading is taken, labelled as its own.
            if to == .timeWait || (state == .timeWait && to == .closed) { return true }
            guard let state, state != .closed, to != state, TCPStateMachine.allows(state, to) else { return false }
            return MonotonicClock.now() &- lastKernelChangeNs >= Self.kernelSilenceNs
        case .tcpInfo, .inferred:
            // The kernel reported every transition of the full socket up to this reading.
            return false
        }
    }
}
