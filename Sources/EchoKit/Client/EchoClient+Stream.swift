import Glibc
import SocketKit
import TCPTrace

extension EchoClient {
    /// The outcome of streaming stdin through the server.
    public struct StreamResult: Sendable {
        public var bytesSent: UInt64 = 0
        public var bytesReceived: UInt64 = 0
        /// FNV-1a of each direction: equal sums and counts mean the echo was identical.
        public var sentDigest: UInt64 = 0xcbf2_9ce4_8422_2325
        public var receivedDigest: UInt64 = 0xcbf2_9ce4_8422_2325
        public var matched: Bool { bytesSent == bytesReceived && sentDigest == receivedDigest }
    }

    /// Like `nc`: bytes from `input` go to the server, the echo goes to `output`. EOF on input
    /// half-closes; the echo keeps flowing until the server closes. Binary-safe.
    public func stream(input: Int32, output: Int32) throws -> StreamResult {
        guard let socket else { throw SystemCallError(call: "send", errno: EBADF) }
        var result = StreamResult()
        let size = 64 * 1024
        let inBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        let outBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { inBuffer.deallocate(); outBuffer.deallocate() }
        var pendingStart = 0, pendingEnd = 0
        var inputOpen = true
        while true {
            // A busy stream may never wait: check for SIGINT on every round too.
            try checkInterrupted()
            // Move what we can without blocking: echo to output, input to the socket.
            var progressed = false
            switch try socket.receive(into: outBuffer) {
            case .processed(0):
                tracker?.notePeerFIN()
                tracker?.observe(socket, cause: "recv()=0: server sent FIN")
                if inputOpen || pendingStart < pendingEnd {
                    // The server went away (died, drained, idle timeout) before we were done:
                    // what we had not sent yet was never echoed. Not a success.
                    throw ClientError("the server closed the connection before the end of the input "
                                      + "(\(result.bytesSent) bytes read from input, \(result.bytesReceived) echoed)", errno: EPIPE)
                }
                close()
                return result
            case .processed(let n):
                let chunk = UnsafeRawBufferPointer(rebasing: outBuffer[0..<n])
                tracker?.data("received", chunk)
                try writeAll(output, chunk)
                result.bytesReceived += UInt64(n)
                result.receivedDigest = fnv(result.receivedDigest, chunk)
                progressed = true
            case .wouldBlock: break
            }
            if pendingStart < pendingEnd {
                if case .processed(let n) = try socket.send(UnsafeRawBufferPointer(rebasing: inBuffer[pendingStart..<pendingEnd])) {
                    tracker?.data("sent", UnsafeRawBufferPointer(rebasing: inBuffer[pendingStart..<pendingStart + n]))
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
                        let chunk = UnsafeRawBufferPointer(rebasing: inBuffer[0..<n])
                        result.bytesSent += UInt64(n)
                        result.sentDigest = fnv(result.sentDigest, chunk)
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

    private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try syscall("write") { write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            offset += n
        }
    }

    private func fnv(_ hash: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h = hash
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* 0x100_0000_01b3
        }
        return h
    }
}
