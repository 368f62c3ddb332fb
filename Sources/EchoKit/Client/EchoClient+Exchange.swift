import Glibc
import SocketKit
import TCPTrace

extension EchoClient {
    /// The result of an exchange: what went out, what came back, compared.
    public struct ExchangeResult: Sendable {
        public var comparison = EchoComparison()
        public var bytesAfterOurFIN = 0
        public var bytesSent: Int { comparison.sent }
        public var bytesReceived: Int { comparison.received }
        public var matched: Bool { comparison.matched }
    }

    /// Sends each message newline-terminated, reads its echo and hands it to `output`, then
    /// half-closes, drains to the server's FIN and closes. A reply that is not the echo stops
    /// the sending (a peer that is not echoing would only be sent more to ignore, and a peer
    /// that already closed would answer it with RST); the rest is drained and judged.
    ///
    /// - Parameter lastAfterHalfClose: shut down writing right after sending the last message,
    ///   before its echo arrives, so the trace shows data received after our FIN (the demo).
    public func exchange(messages: [String], lastAfterHalfClose: Bool = false,
                         output: ([UInt8]) -> Void) throws -> ExchangeResult {
        var result = ExchangeResult()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var halfClosed = false
        var sawEOF = false
        for (index, message) in messages.enumerated() {
            let line = Array(message.utf8) + [UInt8(ascii: "\n")]
            let last = lastAfterHalfClose && index == messages.count - 1
            // TCP_CORK holds the last line in the send queue; shutdown() then tacks the FIN onto
            // it and sends both as one segment, so the echo can only come back after our FIN.
            if last { try socket?.socket.setOption(.cork, true) }
            try line.withUnsafeBytes { try sendAll($0) }
            result.comparison.noteSent(line)
            if last {
                try halfClose()
                try? socket?.socket.setOption(.cork, false)
                halfClosed = true
            }
            // Read this message's echo before sending the next.
            let target = result.comparison.sent
            while result.comparison.received < target {
                let n = try receiveSome(into: buffer)
                if n == 0 { sawEOF = true; break }
                result.comparison.noteReceived(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if halfClosed { result.bytesAfterOurFIN += n }
                if !result.comparison.receivedIsPrefixOfSent { break }
            }
            let echoed = result.comparison.received >= target && (result.comparison.firstDifference ?? .max) >= target
            if echoed { output(line) }
            if !echoed || sawEOF { break }
        }
        if !halfClosed { try halfClose() }
        // Drain to EOF: anything after the echo is unexpected but must not be dropped silently.
        while !sawEOF {
            let n = try receiveSome(into: buffer)
            if n == 0 { break }
            result.comparison.noteReceived(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            result.bytesAfterOurFIN += n
        }
        close()
        return result
    }

    /// `--expect any`: a request/response exchange with a peer that is not an echo server.
    /// Sends every message (newline-terminated) in one write, half-closes, and hands whatever
    /// comes back to `output` until the peer's FIN, then closes.
    ///
    /// One write: a one-shot server that reads once and closes would answer bytes it never
    /// read with RST, so the request should reach it as one segment.
    public func request(messages: [String], output: ([UInt8]) -> Void) throws -> ExchangeResult {
        var result = ExchangeResult()
        let request = messages.flatMap { Array($0.utf8) + [UInt8(ascii: "\n")] }
        if !request.isEmpty {
            try request.withUnsafeBytes { try sendAll($0) }
            result.comparison.noteSent(request)
        }
        try halfClose()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = try receiveSome(into: buffer)
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            result.comparison.noteReceived(chunk)
            result.bytesAfterOurFIN += n
            output(Array(chunk))
        }
        close()
        return result
    }
}
