import Glibc
import SocketKit
import TCPTrace

/// The bytes a load connection sends: a fixed pseudo-random table read from a per-connection
/// starting offset, so every byte of every echo can be checked with memcmp, and a stale or
/// misrouted byte (another connection's, an earlier message's) does not match.
struct LoadPattern: Sendable {
    /// A prime length: consecutive messages start at different table offsets.
    static let period = 65_521
    /// period + the largest message, so any window is one contiguous slice.
    let table: [UInt8]

    init(maxChunk: Int) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var bytes = [UInt8](repeating: 0, count: Self.period + maxChunk)
        for index in 0..<Self.period {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes[index] = UInt8(truncatingIfNeeded: state >> 33)
        }
        for index in Self.period..<bytes.count { bytes[index] = bytes[index - Self.period] }
        table = bytes
    }

    /// `count` bytes of the stream starting at `offset` (count ≤ maxChunk).
    func withBytes<R>(at offset: UInt64, count: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = Int(offset % UInt64(Self.period))
        return try table.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[start..<start + count]))
        }
    }

    /// Whether `received` is exactly the stream's bytes at `offset` (any length: checked in chunks).
    func matches(_ received: UnsafeRawBufferPointer, at offset: UInt64) -> Bool {
        var done = 0
        let chunk = table.count - Self.period
        while done < received.count {
            let n = min(chunk, received.count - done)
            let same = withBytes(at: offset + UInt64(done), count: n) { expected in
                memcmp(expected.baseAddress!, received.baseAddress! + done, n) == 0
            }
            if !same { return false }
            done += n
        }
        return true
    }
}
