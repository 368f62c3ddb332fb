import Foundation
import Testing
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// Most users are not root: run the executables as `nobody` and check the trace still sees
/// every state it claims, TIME_WAIT from sock_diag included.
@Suite(.needsTimeWaitRoom) struct UnprivilegedTests {
    static var setpriv: String? { Capabilities.setpriv }

    @Test(.enabled(if: Capabilities.canRunBuiltExecutablesAsNobody,
                   "needs root to switch to nobody with setpriv, and a build directory nobody can reach"))
    func demo_asNobody_observesTimeWaitViaSockDiag() throws {
        let child = try ChildProcess(Self.setpriv!, [
            "--reuid=65534", "--regid=65534", "--clear-groups", Executables.url("EchoClient").path, "--demo", "--trace", "json",
        ])
        #expect(child.wait() == 0)
        let events = child.events
        #expect(events.allSatisfy { $0.pid != 0 })
        let timeWait = try #require(events.first { $0.side == .client && $0.to == .timeWait })
        #expect(timeWait.source == .sockDiag)
        #expect(events.states(side: .server, conn: 1).contains(.closeWait))
        #expect(child.stdoutText == EchoDemo.messages.map { $0 + "\n" }.joined())
    }
}
