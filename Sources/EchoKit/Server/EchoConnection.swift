import SocketKit
import TCPTrace

/// One accepted connection inside an `EchoEventLoop`: its socket (traced or not) and the echo
/// bytes the peer has not taken yet.
///
/// Touched only by its loop's thread, so its mutable fields skip Swift's dynamic exclusivity
/// checks (see `EchoEventLoop`).
final class EchoConnection {
    let socket: TracedSocket
    let slot: Int
    /// Echo bytes received but not yet sent back (the peer is slow to read). Allocated only
    /// when a send falls short, so idle connections cost no buffer.
    @exclusivity(unchecked) var pending: [UInt8] = []
    @exclusivity(unchecked) var pendingStart = 0
    /// The peer's FIN arrived: finish echoing, then close.
    @exclusivity(unchecked) var peerClosed = false
    /// We sent our FIN (shutdown(SHUT_WR)).
    @exclusivity(unchecked) var shutDown = false
    @exclusivity(unchecked) var wantsWrite = false
    @exclusivity(unchecked) var readPaused = false
    @exclusivity(unchecked) var lastActivityNs: UInt64
    @exclusivity(unchecked) var bytesEchoed: UInt64 = 0
    @exclusivity(unchecked) var bytesAfterPeerFIN: UInt64 = 0
    @exclusivity(unchecked) var nextSampleNs: UInt64?

    init(socket: TracedSocket, slot: Int, now: UInt64) {
        self.socket = socket
        self.slot = slot
        lastActivityNs = now
    }

    var pendingCount: Int { pending.count - pendingStart }

    func queue(_ bytes: UnsafeRawBufferPointer) {
        if pendingStart > 0 && pendingStart == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        }
        pending.append(contentsOf: bytes)
    }

    func consumed(_ count: Int) {
        pendingStart += count
        if pendingStart == pending.count {
            // Give the memory back once the peer caught up: idle connections stay small.
            pending = []
            pendingStart = 0
        } else if pendingStart > 64 * 1024 && pendingStart * 2 > pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
    }
}
