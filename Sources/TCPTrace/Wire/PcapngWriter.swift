import Glibc
import SocketKit

/// Writes captured frames as pcapng (draft-ietf-opsawg-pcapng): one Section Header Block, one
/// Interface Description Block with nanosecond timestamps (if_tsresol = 9), then one Enhanced
/// Packet Block per frame, each carrying the state transitions it caused as `opt_comment`s, so
/// Wireshark, tshark and tcpdump show the states next to the segments.
///
/// Timestamps are CLOCK_REALTIME (readers expect epoch time); the section comment gives the
/// offset to the trace's CLOCK_MONOTONIC values.
public final class PcapngWriter {
    private var fd: Int32
    public let path: String

    /// Creates (or truncates) `path` and writes the section and interface headers.
    /// C: `open(O_WRONLY|O_CREAT|O_TRUNC)`, `write(2)`.
    public init(path: String, link: WireLinkType, interfaceName: String, snapLength: UInt32, sectionComment: String? = nil) throws {
        self.path = path
        fd = try TextFile.createForWriting(path)
        do {
            try writeAll(Self.sectionHeader(comment: sectionComment)
                + Self.interfaceDescription(link: link, name: interfaceName, snapLength: snapLength))
        } catch {
            Glibc.close(fd)
            fd = -1
            throw error
        }
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Appends one frame. C: `write(2)`.
    public func write(frame: [UInt8], originalLength: Int, wallNs: Int64, comments: [String] = []) throws {
        try writeAll(Self.enhancedPacket(frame: frame, originalLength: originalLength, wallNs: wallNs, comments: comments))
    }

    /// Closes the file; EINTR counts as closed. C: `close(2)`.
    public func close() throws {
        guard fd >= 0 else { return }
        let descriptor = fd
        fd = -1
        try closeDescriptor(descriptor, subject: path)
    }

    private func writeAll(_ bytes: [UInt8]) throws(SystemCallError) {
        guard fd >= 0 else { throw SystemCallError(call: "write", errno: EBADF, subject: path) }
        try TextFile.writeAll(fd, bytes, subject: path)
    }

    // MARK: Blocks (pure, little-endian; readers detect the order from the byte-order magic)

    static func sectionHeader(comment: String?) -> [UInt8] {
        var body: [UInt8] = []
        body.appendLE(UInt32(0x1A2B_3C4D))              // byte-order magic
        body.appendLE(UInt16(1)); body.appendLE(UInt16(0))   // version 1.0
        body.appendLE(UInt64.max)                       // section length: not given
        var options: [(UInt16, [UInt8])] = [(4, Array("SocketKit".utf8))]   // shb_userappl
        if let comment { options.insert((1, Array(comment.utf8)), at: 0) }
        body += optionList(options)
        return block(type: 0x0A0D_0D0A, body: body)
    }

    static func interfaceDescription(link: WireLinkType, name: String, snapLength: UInt32) -> [UInt8] {
        var body: [UInt8] = []
        body.appendLE(link.pcapLinkType)
        body.appendLE(UInt16(0))                        // reserved
        body.appendLE(snapLength)
        body += optionList([(2, Array(name.utf8)), (9, [9])])   // if_name, if_tsresol = 10^-9 s
        return block(type: 1, body: body)
    }

    static func enhancedPacket(frame: [UInt8], originalLength: Int, wallNs: Int64, comments: [String]) -> [UInt8] {
        var body: [UInt8] = []
        let timestamp = UInt64(clamping: wallNs)
        body.appendLE(UInt32(0))                        // interface id
        body.appendLE(UInt32(truncatingIfNeeded: timestamp >> 32))
        body.appendLE(UInt32(truncatingIfNeeded: timestamp))
        body.appendLE(UInt32(frame.count))
        body.appendLE(UInt32(clamping: max(originalLength, frame.count)))
        body += frame
        body += [UInt8](repeating: 0, count: padding(frame.count))
        if !comments.isEmpty { body += optionList(comments.map { (1, Array($0.utf8)) }) }   // opt_comment
        return block(type: 6, body: body)
    }

    /// Options: code, length, value padded to 32 bits; closed by opt_endofopt.
    static func optionList(_ options: [(UInt16, [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (code, value) in options {
            let value = Array(value.prefix(Int(UInt16.max) - 3))
            bytes.appendLE(code)
            bytes.appendLE(UInt16(value.count))
            bytes += value
            bytes += [UInt8](repeating: 0, count: padding(value.count))
        }
        bytes += [0, 0, 0, 0]
        return bytes
    }

    /// Type, total length, body, total length again (so readers can walk backwards).
    static func block(type: UInt32, body: [UInt8]) -> [UInt8] {
        let total = UInt32(12 + body.count)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(total))
        bytes.appendLE(type)
        bytes.appendLE(total)
        bytes += body
        bytes.appendLE(total)
        return bytes
    }

    static func padding(_ count: Int) -> Int { (4 - count % 4) % 4 }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
