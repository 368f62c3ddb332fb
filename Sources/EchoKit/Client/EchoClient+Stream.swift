import Glibc
import SocketKit
import TCPTrace

extension EchoClient {
    /// The outcome of streaming stdin through the server.
    public struct StreamResult: Sendable {
        public var comparison = EchoComparison()
        public var bytesSent: UInt64 { UInt64(comparison.sent) }
        public var bytesReceived: UInt64 { UInt64(comparison.received) }
        public var matched: Bool { comparison.matched }
    }

    /// Like `nc`: bytes from `input` go to the server, the echo goes to `output`. EOF on input
    /// half-closes; the echo keeps flowing until the server closes. Binary-safe.
    ///
    /// - Parameter expectEcho: false for `--expect any`: the peer may close its side before
    ///   the input ends (a reply, then FIN), and what came back goes to `output` escaped.
    public func stream(input: Int32, output: Int32, expectEcho: Bool = true) throws -> StreamResult {
        guard let socket else { throw SystemCallError(call: "send", errno: EBADF) }
        var result = StreamResult()
        let size = 64 * 1024
        let inBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        let outBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { inBuffer.deallocate(); outBuffer.deallocate() }
        var pendingStart = 0, pendingEnd = 0
        var inputOpen = true
        var lastByte: UInt8?
        while true {
            // A busy stream may never wait: check for SIGINT on every round too.
            try checkInterrupted()
            // Move what we can without blocking: echo to output, input to the socket.
            var progressed = false
            switch try socket.receive(into: outBuffer, finCause: "recv()=0: server sent FIN") {
            case .processed(0):
                if !expectEcho && (inputOpen || pendingStart < pendingEnd) {
                    // A request/response peer answered and closed: the conversation is over.
                    // Our FIN closes our half too; input not sent yet is said, not silently lost.
                    socket.info("the peer closed before the end of the input: \(result.bytesSent) bytes read from input; "
                                  + "\(pendingEnd - pendingStart) not sent")
                    try halfClose()
                } else if inputOpen || pendingStart < pendingEnd {
                    // The server went away (died, drained, idle timeout) before we were done:
                    // what we had not sent yet was never echoed. Not a success.
                    throw ClientError("the server closed the connection before the end of the input "
                                      + "(\(result.bytesSent) bytes read from input, \(result.bytesReceived) echoed)", errno: EPIPE)
                }
                if !expectEcho, let lastByte, lastByte != UInt8(ascii: "\n") { try writeAll(output, "\n") }
                close()
                return result
            case .processed(let n):
                let chunk = UnsafeRawBufferPointer(rebasing: outBuffer[0..<n])
                if expectEcho {
                    try writeAll(output, chunk)
                } else {
                    try writeAll(output, ByteEscaping.escapeKeepingLines(chunk))
                    lastByte = chunk.last
                }
                result.comparison.noteReceived(chunk)
                progressed = true
            case .wouldBlock: break
            }
            if pendingStart < pendingEnd {
                if case .processed(let n) = try socket.send(UnsafeRawBufferPointer(rebasing: inBuffer[pendingStart..<pendingEnd])) {
                    pendingStart += n
                    progressed = true
                }
            } else if inputOpen {
                var fds = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
                if try syscall("poll", { poll(&fds, 1, 0) }) > 0 {
                    let n = try syscall("read") { read(input, inBuffer.baseAddress, size) }
                    if n == 0 {
                        inputOpen = false
                        try halfClose()
                    } else {
                        result.comparison.noteSent(UnsafeRawBufferPointer(rebasing: inBuffer[0..<n]))
                        pendingStart = 0
                        pendingEnd = n
                    }
                    progressed = true
                }
            }
            if progressed { continue }
            let wantOut: Int32 = pendingStart < pendingEnd ? POLLOUT : 0
            let watchInput = inputOpen && pendingStart == pendingEnd
            // While input is open the server may stay silent for ever (an interactive user):
            // the I/O timeout applies only once we are waiting for the rest of the echo.
            try waitFor(POLLIN | wantOut, timeout: watchInput ? nil : configuration.ioTimeoutSeconds,
                        what: "recv", extra: watchInput ? input : -1)
        }
    }

    private func writeAll(_ fd: Int32, _ text: String) throws {
        var bytes = Array(text.utf8)
        try bytes.withUnsafeMutableBytes { try writeAll(fd, UnsafeRawBufferPointer($0)) }
    }

    private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try syscall("write") { write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            offset += n
        }
    }
}
