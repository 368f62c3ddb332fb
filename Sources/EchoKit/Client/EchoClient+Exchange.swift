import Glibc
import SocketKit
import TCPTrace

extension EchoClient {
    /// The result of an exchange: what went out, what came back, and whether they match.
    public struct ExchangeResult: Sendable {
        public var bytesSent = 0
        public var bytesReceived = 0
        public var bytesAfterOurFIN = 0
        public var matched = false
    }

    /// Sends each message newline-terminated, reads its echo and hands it to `output`, then
    /// half-closes, drains to the server's FIN and closes.
    ///
    /// - Parameter lastAfterHalfClose: shut down writing right after sending the last message,
    ///   before its echo arrives, so the trace shows data received after our FIN (the demo).
    public func exchange(messages: [String], lastAfterHalfClose: Bool = false,
                         output: ([UInt8]) -> Void) throws -> ExchangeResult {
        var result = ExchangeResult()
        var expected: [UInt8] = []
        var received: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var halfClosed = false
        for (index, message) in messages.enumerated() {
            let line = Array(message.utf8) + [UInt8(ascii: "\n")]
            expected += line
            try line.withUnsafeBytes { try sendAll($0) }
            result.bytesSent += line.count
            if lastAfterHalfClose && index == messages.count - 1 {
                try halfClose()
                halfClosed = true
            }
            // Read this message's echo before sending the next.
            let target = expected.count
            while received.count < target {
                let n = try receiveSome(into: buffer)
                if n == 0 { break }
                received += buffer[0..<n]
                if halfClosed { result.bytesAfterOurFIN += n }
            }
            if received.count >= target { output(Array(received[(target - line.count)..<target])) }
            if received.count < target { break }
        }
        if !halfClosed { try halfClose() }
        // Drain to EOF: anything after the echo is unexpected but must not be dropped silently.
        while true {
            let n = try receiveSome(into: buffer)
            if n == 0 { break }
            received += buffer[0..<n]
            result.bytesAfterOurFIN += n
        }
        result.bytesReceived = received.count
        result.matched = received == expected
        close()
        return result
    }
}
