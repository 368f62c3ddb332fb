import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// Bad command lines and failing system calls: one clear line on stderr, a sysexits code,
/// nothing on stdout, never a stack trace.
@Suite("Bad input and failing calls")
struct RobustnessTests {
    static let badArguments: [[String]] = [
        ["--bogus"],
        ["-x"],
        ["--port"],
        ["--port", "70000"],
        ["--port", "-1"],
        ["--port", "seven"],
        ["--port="],
        ["--trace", "xml"],
        ["--trace"],
        ["--timeout", "soon"],
        ["--no-color=yes"],
    ]

    @Test("a bad command line prints one line on stderr, nothing on stdout, and exits 64",
          arguments: ["EchoServer", "EchoClient"])
    func badArgumentsExit64(executable: String) throws {
        for arguments in Self.badArguments {
            // --timeout is the client's; the server must reject it as unknown, also with 64.
            let child = try ChildProcess(executable, arguments)
            let status = child.wait(timeout: 10)
            #expect(status == 64, "\(executable) \(arguments): exit \(status)")
            #expect(child.stdout.isEmpty, "\(executable) \(arguments): stdout \(child.stdoutText)")
            let lines = child.stderrText.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count == 1, "\(executable) \(arguments): stderr \(child.stderrText)")
            #expect(lines.first?.hasPrefix("\(executable): ") == true)
            #expect(!hasCrashMarker(child.stderrText))
        }
    }

    @Test("a server bad value (threads, backlog, drain timeout) is a usage error too")
    func serverValuesOutOfRange() throws {
        for arguments in [["--threads", "0"], ["--backlog", "99999999"], ["--drain-timeout", "-3"],
                          ["--max-connections", "lots"], ["--idle-timeout", "nan"]] {
            let child = try ChildProcess("EchoServer", arguments)
            #expect(child.wait(timeout: 10) == 64, "\(arguments)")
            #expect(child.stdout.isEmpty)
            #expect(child.stderrText.split(separator: "\n").count == 1, "\(arguments): \(child.stderrText)")
        }
    }

    @Test("an unknown host exits 68 with the name and the resolver's reason", arguments: ["EchoServer", "EchoClient"])
    func unknownHost(executable: String) throws {
        let message = executable == "EchoClient" ? ["hi"] : []
        let child = try ChildProcess(executable, ["--host", "no-such-host.invalid", "--port", "7", "--trace", "off"] + message)
        #expect(child.wait(timeout: 20) == 68)
        #expect(child.stdout.isEmpty)
        let text = child.stderrText
        #expect(text.split(separator: "\n").count == 1, "\(text)")
        #expect(text.contains("no-such-host.invalid"))
        #expect(!hasCrashMarker(text))
    }

    @Test("a port in use: one line naming bind(), the address and EADDRINUSE, exit 69")
    func portInUse() throws {
        let listener = try TestListener()
        let child = try ChildProcess("EchoServer", ["--port", "\(listener.port)", "--threads", "1"])
        #expect(child.wait(timeout: 10) == 69)
        let text = child.stderrText
        // The text trace may show the socket first; the failure itself is the last line.
        let last = text.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == "EchoServer: bind(127.0.0.1:\(listener.port)): Address already in use (EADDRINUSE)", "\(text)")
        #expect(child.stdout.isEmpty)
        #expect(!hasCrashMarker(text))
        let quiet = try ChildProcess("EchoServer", ["--port", "\(listener.port)", "--threads", "1", "--trace", "off"])
        #expect(quiet.wait(timeout: 10) == 69)
        #expect(quiet.stderrText.split(separator: "\n").count == 1, "\(quiet.stderrText)")
    }

    @Test("binding port 80 as an unprivileged user: one line naming bind() and EACCES, exit 77",
          .enabled(if: Capabilities.canDropPrivileges, "needs root to run the server as nobody via setpriv"))
    func permissionDenied() throws {
        // The build directory may not be readable by nobody: run a copy from a world-readable place.
        let (copy, cleanup) = try Executables.copyForNobody("EchoServer", tag: "perm")
        defer { cleanup() }
        let child = try ChildProcess("EchoServer", ["--port", "80", "--threads", "1", "--trace", "off"],
                                     wrapper: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                                     executable: copy)
        #expect(child.wait(timeout: 10) == 77)
        #expect(child.stderrText == "EchoServer: bind(127.0.0.1:80): Permission denied (EACCES) (ports below 1024 need root or CAP_NET_BIND_SERVICE; try --port 7007)\n", "\(child.stderrText)")
        #expect(child.stdout.isEmpty)
    }

    @Test("connection refused: one line naming connect(), the address and ECONNREFUSED, exit 69; the trace shows SYN_SENT → CLOSED")
    func connectionRefused() throws {
        // A port that was just free: bind, learn the port, close, connect there.
        let port = try { () throws -> UInt16 in let l = try TestListener(); return l.port }()
        let quiet = try ChildProcess("EchoClient", ["--port", "\(port)", "--trace", "off", "hi"])
        #expect(quiet.wait(timeout: 10) == 69)
        #expect(quiet.stderrText == "EchoClient: connect(127.0.0.1:\(port)): Connection refused (ECONNREFUSED)\n", "\(quiet.stderrText)")
        #expect(quiet.stdout.isEmpty)

        let traced = try ChildProcess("EchoClient", ["--port", "\(port)", "--trace", "json", "hi"])
        #expect(traced.wait(timeout: 10) == 69)
        let events = traced.events
        #expect(events.contains { $0.kind == .error && $0.errno == ECONNREFUSED })
        #expect(events.states(side: .client).last == .closed)
        #expect(!hasCrashMarker(traced.stderrText))
    }

    @Test("host unreachable (a network namespace whose only route to 192.0.2.0/24 is 'unreachable'): EHOSTUNREACH, exit 69",
          .enabled(if: Capabilities.networkNamespaceWithIP,
                   "needs a network namespace this user can configure (unshare -n/-rn + ip); refused here (container or AppArmor policy?) or tools missing"))
    func hostUnreachable() throws {
        // A fresh namespace: only lo, and an explicit unreachable route, so nothing leaves the machine.
        let script = "ip link set lo up && ip route add unreachable 192.0.2.0/24 && exec \"$0\" \"$@\""
        let namespace = Capabilities.networkNamespacePrefix
        let child = try ChildProcess("EchoClient", ["--host", "192.0.2.1", "--port", "7", "--trace", "json", "hi"],
                                     wrapper: namespace + ["/bin/sh", "-c", script])
        let status = child.wait(timeout: 20)
        #expect(status == 69)
        let last = child.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last == "EchoClient: connect(192.0.2.1:7): No route to host (EHOSTUNREACH)", "\(child.stderrText)")
        #expect(child.events.contains { $0.kind == .error && $0.errno == EHOSTUNREACH })
        #expect(child.stdout.isEmpty)
    }
}
