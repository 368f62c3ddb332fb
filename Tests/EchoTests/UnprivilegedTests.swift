import Foundation
import Testing
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// Most users are not root: run the executables as `nobody` and check the trace still sees
/// every state it claims, TIME_WAIT from sock_diag included.
@Suite(.needsTimeWaitRoom) struct UnprivilegedTests {
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static var canDropPrivileges: Bool {
        guard geteuid() == 0, setpriv != nil else { return false }
        // nobody must be able to reach the built binary (a checkout under a private home may not be).
        return Self.nobodyCanExecute(Executables.url("EchoClient").path)
    }

    static func nobodyCanExecute(_ path: String) -> Bool {
        var url = URL(fileURLWithPath: path)
        while url.path != "/" {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
                  let mode = attributes[.posixPermissions] as? Int else { return false }
            if mode & 0o001 == 0 { return false }   // others' execute/search bit
            url.deleteLastPathComponent()
        }
        return true
    }

    @Test(.enabled(if: UnprivilegedTests.canDropPrivileges,
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
