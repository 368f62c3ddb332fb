import SocketKit

/// One end of a connection as TCPWatch follows it: a loopback connection is two of these, each
/// under its own local address.
final class WatchedConnection {
    struct Key: Hashable {
        let local: SocketAddress
        let peer: SocketAddress
    }

    let id: Int
    let key: Key
    let localText: String
    let peerText: String
    /// server: its local port is a listening port; client otherwise.
    var side: TraceSide
    var cookie: UInt64
    var state: TCPState?
    /// When `state` began: observed (tracepoint) or the poll that first saw it.
    var enteredNs: UInt64
    /// The poll before the one that saw `state`: the change happened between the two.
    var enteredAfterNs: UInt64?
    /// `state` was observed (not inferred): its start time means something.
    var stateObserved = false
    var context = TCPStateMachine.Context()
    var inode: UInt32 = 0
    var owner: SocketOwner?
    var receiveQueue: UInt32 = 0
    var timerMs: UInt32?
    /// When the peer's FIN came, as text (for the CLOSE_WAIT warning).
    var peerFIN: String?
    /// Polls in a row that did not show it (see `applySnapshot`).
    var missedPolls = 0
    /// Events kept for `--picture` (bounded by the watch).
    var kept = false

    init(id: Int, key: Key, side: TraceSide, cookie: UInt64, now: UInt64) {
        self.id = id
        self.key = key
        localText = key.local.description
        peerText = key.peer.description
        self.side = side
        self.cookie = cookie
        enteredNs = now
    }

    var isFinished: Bool { state == .closed }
}
