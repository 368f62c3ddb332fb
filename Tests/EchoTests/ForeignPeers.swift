import Foundation
import Glibc
import SocketKit
import TCPTrace
import EchoKit
import TestSupport
import Testing

/// Peers nobody in this project wrote in Swift: the classic sockets-tutorial pair, as small
/// Python 3 programs, each bounded by its own socket timeout so a broken run fails, never hangs.
enum ForeignPeer {
    static let python = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Binds 127.0.0.1:0, prints its port, accepts one connection, recv()s once, replies with
    /// its own greeting, close()s. Prints what it received (repr) on the second stdout line.
    static func greetingServer(reply: String = "b'Hello from server'") -> String {
        """
        import socket, sys
        s = socket.socket()
        s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(10)
        print(s.getsockname()[1], flush=True)
        c, _ = s.accept(); c.settimeout(10)
        data = c.recv(1024)
        c.sendall(\(reply)); c.close(); s.close()
        print(repr(data), flush=True)
        """
    }

    /// Connects, sends once, recv()s once, prints it, close()s without shutdown().
    static func oneShotClient(port: UInt16) -> String {
        """
        import socket
        c = socket.create_connection(("127.0.0.1", \(port)), timeout=10)
        c.sendall(b"Hello from client")
        print(repr(c.recv(1024)), flush=True)
        c.close()
        """
    }

    /// Starts a greeting server and returns it with its port (read from its first stdout line).
    static func startGreetingServer(reply: String = "b'Hello from server'") throws -> (ChildProcess, UInt16) {
        let child = try ChildProcess(try #require(python), ["-c", greetingServer(reply: reply)])
        guard waitFor(timeout: 10, { child.stdoutText.contains("\n") }),
              let port = UInt16(child.stdoutText.split(separator: "\n").first ?? "") else {
            child.signal(SIGKILL)
            _ = child.wait(timeout: 5)
            throw HarnessError("the Python greeting server did not print its port: \(child.stderrText)")
        }
        return (child, port)
    }
}

/// Waits for `child` at most `seconds`; past that it is SIGKILLed and the test fails naming
/// `what` hung. Returns the exit status (nil when it had to be killed).
func finished(_ child: ChildProcess, within seconds: Double, _ what: String,
              sourceLocation: SourceLocation = #_sourceLocation) -> Int32? {
    let deadline = Date().addingTimeInterval(seconds)
    while child.process.isRunning && Date() < deadline { usleep(5_000) }
    if child.process.isRunning {
        child.signal(SIGKILL)
        _ = child.wait(timeout: 5)
        Issue.record("\(what) hung: still running after \(seconds) s, killed with SIGKILL; stderr: \(child.stderrText.suffix(400))",
                     sourceLocation: sourceLocation)
        return nil
    }
    return child.wait(timeout: 5)
}

/// A fresh directory for trace files, writable by whoever runs the programs (root or nobody).
func traceDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "socketkit-anypeer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    guard mkdir(path, 0o777) == 0, chmod(path, 0o777) == 0 else { throw SystemCallError(call: "mkdir", errno: errno, subject: path) }
    return path
}

/// Every event of a JSON trace file written by a process that has ended.
func traceEvents(_ path: String) throws -> [TraceEvent] {
    try TraceEvent.read(jsonLinesAt: path)
}

extension Array where Element == TraceEvent {
    /// The state events of one connection, in file order.
    func stateEvents(side: TraceSide, conn: Int) -> [TraceEvent] {
        filter { $0.kind == .state && $0.side == side && $0.conn == conn }
    }
}

/// A connection's trace runs from its first state to a resting one: the first transition
/// starts where a socket starts (CLOSED for a client, LISTEN for an accepted one), the last
/// ends in TIME_WAIT or CLOSED.
func expectCompleteTrace(_ events: [TraceEvent], side: TraceSide, conn: Int, startsFrom start: TCPState,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    let states = events.stateEvents(side: side, conn: conn)
    let path = states.map { "\($0.from?.name ?? "—")→\($0.to?.name ?? "?")" }.joined(separator: " ")
    #expect(states.first?.from == start, "\(side) #\(conn) starts from \(start.name): \(path)", sourceLocation: sourceLocation)
    #expect(states.contains { $0.to == .established }, "\(side) #\(conn) reached ESTABLISHED: \(path)", sourceLocation: sourceLocation)
    #expect(states.last?.to == .timeWait || states.last?.to == .closed, "\(side) #\(conn) ends in TIME_WAIT or CLOSED: \(path)",
            sourceLocation: sourceLocation)
}
