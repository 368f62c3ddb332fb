import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct TraceWriterTests {
    static func event(_ n: Int) -> TraceEvent {
        TraceEvent(timestampNs: UInt64(n), side: .server, conn: n, kind: .info, cause: "event \(n)")
    }

    static func readAll(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func flush_writesEveryEventInOrder() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let reader = ReaderBox(fd: fds[0])
        let thread = try ThreadHandle { reader.run() }
        do {
            let writer = TraceWriter(format: .json, fd: fds[1], ownsDescriptor: true, color: false, immediate: false)
            for n in 0..<500 { writer.emit(Self.event(n)) }
            writer.flush()
            #expect(writer.droppedCount == 0)
        }   // deinit stops the thread and closes the write end: the reader sees EOF.
        #expect(thread.join(timeoutSeconds: 30), "HUNG: the thread did not end within 30 s")
        let lines = reader.text.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
        #expect(lines.map(\.conn) == Array(0..<500))
    }

    @Test func aReaderThatNeverReads_cannotHangShutdown() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let start = MonotonicClock.now()
        do {
            let writer = TraceWriter(format: .text, fd: fds[1], ownsDescriptor: true, color: false, immediate: false,
                                     flushTimeoutSeconds: 0.2)
            for n in 0..<5000 { writer.emit(Self.event(n)) }
        }
        #expect(MonotonicClock.now() - start < 3_000_000_000)
    }

    @Test func aReaderThatDoesNotRead_neverBlocksEmit_andDropsAreReported() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        var dropped = 0
        let reader = ReaderBox(fd: fds[0])
        var thread: ThreadHandle?
        do {
            let writer = TraceWriter(format: .json, fd: fds[1], ownsDescriptor: true, color: false, immediate: false,
                                     capacity: 64, flushTimeoutSeconds: 0.2)
            // Nobody reads the pipe (64 KiB): the writer thread blocks, emit must not.
            let start = MonotonicClock.now()
            for n in 0..<20_000 { writer.emit(Self.event(n)) }
            #expect(MonotonicClock.now() - start < 5_000_000_000)
            dropped = writer.droppedCount
            #expect(dropped > 0)
            // Now drain the pipe in the background: the writer catches up and announces the gap.
            thread = try ThreadHandle { reader.run() }
            writer.flush()
        }   // deinit joins the writer and closes fds[1]: the reader sees EOF.
        #expect(thread?.join(timeoutSeconds: 30) ?? true, "HUNG: the reader thread did not end within 30 s")
        let events = reader.text.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
        let notes = events.filter { $0.cause.hasSuffix("lines dropped (slow reader)") }
        #expect(!notes.isEmpty)
        let reported = notes.compactMap { Int($0.cause.split(separator: " ")[1]) }.reduce(0, +)
        #expect(reported == dropped)
        #expect(events.count - notes.count + dropped == 20_000)
    }

    @Test func theQueueIsBoundedInBytes_notOnlyInEvents() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let budget = 64 * 1024
        let writer = TraceWriter(format: .json, fd: fds[1], ownsDescriptor: true, color: false, immediate: false,
                                 capacity: 1_000_000, byteBudget: budget, flushTimeoutSeconds: 0.2)
        // Nobody reads: with a 1,000,000-event capacity only the byte budget can stop the queue.
        // Each event carries a 4 KiB cause, so at most budget / 4 KiB fit (plus what the writer
        // already took into the full pipe).
        let cause = String(repeating: "x", count: 4096)
        for n in 0..<2_000 {
            var event = Self.event(n)
            event.cause = cause
            writer.emit(event)
        }
        let dropped = writer.droppedCount
        #expect(dropped >= 2_000 - budget / 4096 - 64, "dropped \(dropped) of 2000 with a \(budget)-byte budget")
        #expect(dropped < 2_000)
    }
}

final class ReaderBox: @unchecked Sendable {
    let fd: Int32
    var text = ""
    init(fd: Int32) { self.fd = fd }
    func run() { text = TraceWriterTests.readAll(fd) }
}
