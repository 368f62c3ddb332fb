import Foundation
import Testing
import SocketKit
import TCPTrace
import EchoKit
import TestSupport

/// Linux skips TIME_WAIT when its table is full (net.ipv4.tcp_max_tw_buckets): the trace must
/// say so and must not infer a TIME_WAIT the kernel never created. Reproduced in a private
/// user+network namespace with the limit set to 0 (no root needed where user namespaces are).
@Suite struct TimeWaitOverflowTests {
    static let unshare = ["/usr/bin/unshare", "/bin/unshare"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static var namespacesWork: Bool {
        Capabilities.userNetworkNamespaces
    }

    @Test(.enabled(if: TimeWaitOverflowTests.namespacesWork, "needs unshare -Urn (user + network namespaces)"))
    func fullTimeWaitTable_isReportedNotInferred() throws {
        let script = "ip link set lo up 2>/dev/null || true; echo 0 > /proc/sys/net/ipv4/tcp_max_tw_buckets && exec \"$0\" --demo --trace json --kernel-trace off"
        let child = try ChildProcess(Self.unshare!, ["-Urn", "sh", "-c", script, Executables.url("EchoClient").path])
        #expect(child.wait() == 0)
        let events = child.events
        let client = events.filter { $0.side == .client }
        #expect(client.contains { $0.kind == .warning && $0.cause.hasPrefix("no TIME_WAIT: the kernel's table of TIME_WAIT sockets is full") })
        #expect(!client.contains { $0.to == .timeWait })
        #expect(client.last { $0.kind == .state }?.to == .closed)
    }
}
