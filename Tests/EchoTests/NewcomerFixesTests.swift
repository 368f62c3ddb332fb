import Foundation
import Testing
import TestSupport
import SocketKit

/// What a newcomer tripped over (issue 13), each checked on the real executables.
@Suite(.serialized) struct NewcomerFixesTests {
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        return UInt16(bigEndian: address.sin_port)
    }

    @Test func demo_usesTheGivenPort() throws {
        let port = try Self.freePort()
        let child = try ChildProcess("EchoClient", ["--demo", "--port", String(port), "--kernel-trace", "off", "--no-color"])
        #expect(child.wait(timeout: 30) == 0)
        #expect(child.stderrText.contains("127.0.0.1:\(port)"), "\(child.stderrText)")
    }

    @Test func picture_withAWrongExtension_isAUsageError() throws {
        let child = try ChildProcess("EchoClient", ["--demo", "--picture", "demo.png"])
        #expect(child.wait(timeout: 10) == 64)
        #expect(child.stderrText.contains("--picture") && child.stderrText.contains(".svg or .html"))
        let alone = try ChildProcess("EchoClient", ["--state-diagram", "s.svg", "hello"])
        #expect(alone.wait(timeout: 10) == 64)
    }

    /// Ctrl-C with a client connected: the server says it is draining, and in JSON mode every
    /// line on stderr, the closing summary included, is JSON.
    @Test func serverInterrupt_saysDraining_andJSONModeStaysJSON() throws {
        let port = try Self.freePort()
        let server = try ChildProcess("EchoServer", ["--port", String(port), "--threads", "1", "--trace", "json", "--drain-timeout", "2"])
        defer { if server.process.isRunning { kill(server.pid, SIGKILL) } }
        #expect(server.waitForStderr { $0.contains("\"to\":\"LISTEN\"") }, "server did not listen: \(server.stderrText)")
        let client = try ChildProcess("EchoClient", ["--port", String(port), "--trace", "off"], stdin: true)
        defer { if client.process.isRunning { kill(client.pid, SIGKILL) } }
        #expect(server.waitForStderr { $0.contains("\"to\":\"ESTABLISHED\"") }, "no connection: \(server.stderrText)")
        server.signal(SIGINT)
        #expect(server.waitForStderr { $0.contains("draining 1 connection, up to 2 s; Ctrl-C again to quit") })
        let status = server.wait(timeout: 15)
        if server.process.isRunning { kill(server.pid, SIGKILL); Issue.record("EchoServer hung after SIGINT: killed") }
        #expect(status == 0)
        let lines = server.stderrText.split(separator: "\n")
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "not JSON: \(line)")
        }
        // The summary is an event (followers may still report the last closes after it).
        #expect(lines.contains { $0.contains("\"event\":\"info\"") && $0.contains("\"cause\":\"stopped: 1 connection served") },
                "\(server.stderrText)")
    }
}
