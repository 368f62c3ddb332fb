import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// What the README promises and no other test checked (issue 14, item 5): colours, exit codes,
/// --close-wait-warn, --host localhost, the slow-motion fallback.
@Suite("README claims")
struct ReadmeClaimsTests {
    // MARK: Colours

    static let script = Capabilities.tool("script")

    /// The demo's stderr through a pseudo-terminal (`script`), so colour is possible at all:
    /// without a terminal these checks could not fail.
    static func demoOnTerminal(_ environment: [String: String], _ extra: String = "") throws -> String {
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = nil
        for (key, value) in environment { env[key] = value }
        let command = "'\(Executables.url("EchoClient").path)' --demo --kernel-trace off \(extra)"
        let child = try ChildProcess(script ?? "/usr/bin/script", ["-qec", command, "/dev/null"], environment: env)
        #expect(child.wait(timeout: 30) == 0, "\(child.stderrText)")
        return child.stdoutText
    }

    @Test("colours: on for a terminal; off with NO_COLOR, TERM=dumb, --no-color, and when stderr is not a terminal",
          .enabled(if: script != nil, "needs script(1) (util-linux) for a pseudo-terminal"))
    func coloursFollowTheTerminalAndTheEnvironment() throws {
        let escape = "\u{1b}["
        let colourful = try Self.demoOnTerminal(["TERM": "xterm"])
        #expect(colourful.contains(escape), "a terminal with TERM=xterm gets colours (else the checks below prove nothing)")
        #expect(!(try Self.demoOnTerminal(["TERM": "xterm", "NO_COLOR": "1"])).contains(escape), "NO_COLOR")
        #expect(!(try Self.demoOnTerminal(["TERM": "dumb"])).contains(escape), "TERM=dumb")
        #expect(!(try Self.demoOnTerminal(["TERM": "xterm"], "--no-color")).contains(escape), "--no-color")
        var env = ProcessInfo.processInfo.environment
        env["TERM"] = "xterm"
        env["NO_COLOR"] = nil
        let piped = try ChildProcess("EchoClient", ["--demo", "--kernel-trace", "off"], environment: env)
        #expect(piped.wait(timeout: 30) == 0)
        #expect(!piped.stderrText.isEmpty && !piped.stderrText.contains(escape), "stderr is a pipe, not a terminal")
    }

    // MARK: Exit codes

    @Test("73: the trace file cannot be created (both programs), one line naming open() and the path",
          arguments: ["EchoServer", "EchoClient"])
    func traceFileCannotBeCreated(program: String) throws {
        let path = "/nonexistent-\(getpid())/trace.jsonl"
        let child = try ChildProcess(program, ["--port", "1", "--trace-file", path] + (program == "EchoClient" ? ["x"] : []))
        #expect(child.wait(timeout: 10) == 73)
        #expect(child.stderrText == "\(program): open(\(path)): No such file or directory (ENOENT)\n", "\(child.stderrText)")
    }

    @Test("71: out of descriptors at start-up (prlimit --nofile=6), one line naming the call and EMFILE",
          .enabled(if: Capabilities.prlimit != nil, "needs prlimit (util-linux)"))
    func outOfDescriptorsAtStartUp() throws {
        let child = try ChildProcess("EchoServer", ["--port", "0", "--trace", "off"],
                                     wrapper: [Capabilities.prlimit ?? "/usr/bin/prlimit", "--nofile=6:6"])
        #expect(child.wait(timeout: 10) == 71)
        let lines = child.stderrText.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("EchoServer: ") && lines[0].hasSuffix(": Too many open files (EMFILE)"),
                "\(child.stderrText)")
    }

    @Test("the client on SIGTERM closes cleanly (FIN, traced) and exits 143")
    func clientSIGTERM() throws {
        let server = try ServerProcess()
        let client = try ChildProcess("EchoClient", ["--port", "\(server.port)", "--trace", "json"], stdin: true)
        client.stdinHandle.write(Data("hello\n".utf8))
        #expect(waitFor { client.stdoutText == "hello\n" })
        client.signal(SIGTERM)
        #expect(client.wait(timeout: 10) == 143)
        #expect(client.terminationReason == .exit, "exited by itself, not killed by the signal")
        #expect(client.events.states(side: .client).contains(.finWait1), "our FIN is in the trace")
        #expect(client.stderrText.hasSuffix("EchoClient: interrupted by SIGTERM\n"), "\(client.stderrText.suffix(200))")
        #expect(server.stop() == 0)
    }

    static let setpriv = Capabilities.tool("setpriv")
    static let unprivilegedTracepoint = !Capabilities.isRoot && KernelTracepoint.availability() != .available

    @Test("--kernel-trace on without the privilege: one line, exit 77",
          .enabled(if: (Capabilities.isRoot && setpriv != nil) || unprivilegedTracepoint,
                   "needs root with setpriv (to run as nobody), or an unprivileged user without tracepoint access"))
    func kernelTraceOnUnprivileged() throws {
        let child: ChildProcess
        var cleanup: () -> Void = {}
        if Capabilities.isRoot {
            let (copy, remove) = try Executables.copyForNobody("EchoServer", tag: "claims")
            cleanup = remove
            child = try ChildProcess("EchoServer", ["--port", "0", "--kernel-trace", "on"],
                                     wrapper: [Self.setpriv ?? "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                                     executable: copy)
        } else {
            child = try ChildProcess("EchoServer", ["--port", "0", "--kernel-trace", "on"])
        }
        defer { cleanup() }
        #expect(child.wait(timeout: 10) == 77)
        let lines = child.stderrText.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("EchoServer: --kernel-trace on: the kernel tracepoint is unavailable: needs root"),
                "\(child.stderrText)")
    }

    @Test("--kernel-trace on where the kernel has no tracefs (hidden in a mount namespace): one line, exit 69",
          .enabled(if: Capabilities.isRoot && Capabilities.unshare != nil, "needs root and unshare (a private mount namespace)"))
    func kernelTraceOnWithoutTracefs() throws {
        // /sys/kernel covered by an empty read-only tmpfs: no tracefs, and nowhere to mount one.
        let script = "mount -t tmpfs -o ro none /sys/kernel && exec \"$0\" \"$@\""
        let child = try ChildProcess("EchoServer", ["--port", "0", "--kernel-trace", "on"],
                                     wrapper: [Capabilities.unshare ?? "/usr/bin/unshare", "-m", "/bin/sh", "-c", script])
        #expect(child.wait(timeout: 10) == 69)
        let lines = child.stderrText.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("EchoServer: --kernel-trace on: the kernel tracepoint is unavailable: tracefs"),
                "\(child.stderrText)")
    }

    // MARK: Slow motion

    static let userNamespaces: Bool = Capabilities.unshare.map { Capabilities.succeeds($0, ["-Ur", "true"]) } ?? false

    /// A user namespace in which no further namespace may be created (user.max_user_namespaces
    /// = 0 there): slow motion's own `unshare -Urn` is refused, as in Docker or under AppArmor.
    static func scenarioWithoutNamespaces(_ slowMotion: String) throws -> ChildProcess {
        let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\""
        let child = try ChildProcess("EchoClient", ["--scenario", "refused", "--slow-motion", slowMotion, "--no-color"],
                                     wrapper: [Capabilities.unshare ?? "/usr/bin/unshare", "-Ur", "/bin/sh", "-c", script])
        _ = child.wait(timeout: 60)
        return child
    }

    @Test("--slow-motion on where namespaces are refused: one line, exit 69",
          .enabled(if: userNamespaces, "needs unshare -Ur (a user namespace to refuse nested ones in)"))
    func slowMotionOnRefused() throws {
        let child = try Self.scenarioWithoutNamespaces("on")
        #expect(child.process.terminationStatus == 69)
        let lines = child.stderrText.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("EchoClient: slow motion unavailable: user/network namespaces not permitted here"),
                "\(child.stderrText)")
    }

    @Test("--slow-motion auto where namespaces are refused: runs at real speed with a one-line note",
          .enabled(if: userNamespaces, "needs unshare -Ur (a user namespace to refuse nested ones in)"))
    func slowMotionFallbackLine() throws {
        let child = try Self.scenarioWithoutNamespaces("auto")
        #expect(child.process.terminationStatus == 0, "\(child.stderrText)")
        let notes = child.stderrText.split(separator: "\n").filter { $0.hasPrefix("Slow motion:") }
        #expect(notes.count == 1)
        #expect(notes.first?.hasPrefix("Slow motion: off — user/network namespaces not permitted here") == true, "\(notes)")
    }

    // MARK: --close-wait-warn, --host localhost

    /// EchoServer stays in CLOSE_WAIT only with echo bytes it cannot deliver, and on loopback the
    /// kernel's ~4 MB send buffer takes them all first: the warning itself is tested in-process
    /// (EchoServerTracingTests, with the option parsed as here). This checks the executable's
    /// parser owns the option: a bad value is a usage error naming it.
    @Test("--close-wait-warn is the server's option: a bad value is a usage error naming it")
    func closeWaitWarnIsParsed() throws {
        let child = try ChildProcess("EchoServer", ["--port", "0", "--close-wait-warn", "soon"])
        #expect(child.wait(timeout: 10) == 64)
        #expect(child.stderrText.hasPrefix("EchoServer: --close-wait-warn: 'soon' is not a number of seconds"), "\(child.stderrText)")
    }

    @Test("--host localhost: both programs resolve it and talk over loopback", .needsTimeWaitRoom)
    func hostLocalhost() throws {
        let server = try ServerProcess(["--host", "localhost"])
        let listen = try #require(server.child.events.first { $0.to == .listen })
        let local = try #require(listen.local.flatMap(SocketAddress.init(parsing:)))
        #expect(local.description.hasPrefix("127.") || local.description.hasPrefix("[::1]"), "\(local)")
        let client = try ChildProcess("EchoClient", ["--host", "localhost", "--port", "\(server.port)", "--trace", "json", "hello"])
        #expect(client.wait(timeout: 10) == 0)
        #expect(client.stdoutText == "hello\n")
        #expect(client.events.states(side: .client).contains(.established))
        #expect(server.stop() == 0)
        #expect(server.child.stderrText.contains("stopped: 1 connection served"))
    }
}
