import Foundation
import Glibc
@testable import SocketKit
@testable import TCPTrace
import TestSupport

/// The oracle's own decoder for `sock:inet_sock_set_state` records: written here, apart from
/// the tracer's (`StateChangeLayout`), so a decoding mistake there cannot hide in both. It reads
/// the kernel's `format` file with its own parsing, takes the fields it names, and formats
/// addresses with the C library's inet_ntop. Only the perf ring reading is shared (the kernel's
/// ABI, in the C shim); what the bytes mean is decided twice, independently.
struct OracleDecoder {
    private struct Field { var offset: Int; var size: Int }
    private var fields: [String: Field] = [:]
    private var minimumSize = 0
    // Looked up once: the oracle decodes every change on the host (tens of thousands a second
    // under churn) and must keep up with the rings.
    private var skaddr = Field(offset: 0, size: 0), oldState = Field(offset: 0, size: 0), newState = Field(offset: 0, size: 0),
                sport = Field(offset: 0, size: 0), dport = Field(offset: 0, size: 0), family = Field(offset: 0, size: 0),
                proto = Field(offset: 0, size: 0), saddr = Field(offset: 0, size: 0), daddr = Field(offset: 0, size: 0),
                saddrV6 = Field(offset: 0, size: 0), daddrV6 = Field(offset: 0, size: 0)

    init() throws {
        let path = "/sys/kernel/tracing/events/sock/inet_sock_set_state/format"
        guard let file = fopen(path, "r") else { throw SystemCallError(call: "fopen", errno: errno, subject: path) }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        // "\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;"
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var name: String?, offset: Int?, size: Int?
            for part in text.split(separator: ";") {
                let pair = part.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                guard pair.count == 2 else { continue }
                switch pair[0] {
                case "field": name = pair[1].split(separator: " ").last.map { String($0.prefix { $0 != "[" }) }
                case "offset": offset = Int(pair[1])
                case "size": size = Int(pair[1])
                default: break
                }
            }
            if let name, let offset, let size { fields[name] = Field(offset: offset, size: size) }
        }
        for name in ["skaddr", "oldstate", "newstate", "sport", "dport", "family", "protocol", "saddr", "daddr", "saddr_v6", "daddr_v6"]
            where fields[name] == nil {
            throw HarnessError("oracle: no field \(name) in \(path)")
        }
        (skaddr, oldState, newState, sport, dport) = (fields["skaddr"]!, fields["oldstate"]!, fields["newstate"]!, fields["sport"]!, fields["dport"]!)
        (family, proto, saddr, daddr) = (fields["family"]!, fields["protocol"]!, fields["saddr"]!, fields["daddr"]!)
        (saddrV6, daddrV6) = (fields["saddr_v6"]!, fields["daddr_v6"]!)
        minimumSize = [skaddr, oldState, newState, sport, dport, family, proto, saddr, daddr, saddrV6, daddrV6]
            .map { $0.offset + $0.size }.max() ?? 0
    }

    private func integer(_ raw: UnsafeRawBufferPointer, _ field: Field) -> UInt64 {
        var value: UInt64 = 0
        // Little- or big-endian host: copy the field's bytes into the low end of a UInt64.
        withUnsafeMutableBytes(of: &value) { out in
            let start = UInt64(1).littleEndian == 1 ? 0 : 8 - field.size
            for index in 0..<field.size { out[start + index] = raw[field.offset + index] }
        }
        return value
    }

    private func text(_ raw: UnsafeRawBufferPointer, _ field: Field, family: Int32) -> String {
        var out = [CChar](repeating: 0, count: 64)
        _ = inet_ntop(family, raw.baseAddress! + field.offset, &out, socklen_t(out.count))
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// One record; nil for another protocol than TCP, or (with `port`) a change on neither end
    /// of that port: the oracle looks only at its own sockets, so other traffic on a busy host
    /// costs it two integer reads a record.
    func decode(_ raw: UnsafeRawBufferPointer, timestampNs: UInt64, pid: Int32, port: UInt16? = nil) -> KernelStateChange? {
        guard raw.count >= minimumSize,
              integer(raw, proto) == UInt64(IPPROTO_TCP) else { return nil }
        if let port, integer(raw, sport) != UInt64(port), integer(raw, dport) != UInt64(port) { return nil }
        let family = Int32(integer(raw, self.family))
        let v6 = family == AF_INET6
        return KernelStateChange(
            timestampNs: timestampNs, skaddr: integer(raw, skaddr),
            oldState: UInt8(truncatingIfNeeded: integer(raw, oldState)), newState: UInt8(truncatingIfNeeded: integer(raw, newState)),
            family: family,
            sourcePort: UInt16(truncatingIfNeeded: integer(raw, sport)), destinationPort: UInt16(truncatingIfNeeded: integer(raw, dport)),
            sourceAddress: text(raw, v6 ? saddrV6 : saddr, family: family),
            destinationAddress: text(raw, v6 ? daddrV6 : daddr, family: family), pid: pid)
    }

    /// What the rings hold (bounded per drain), decoded here, in timestamp order; with `port`,
    /// only changes with that port on one end.
    func drain(_ tracepoint: KernelTracepoint, port: UInt16? = nil) -> [KernelStateChange] {
        var changes: [KernelStateChange] = []
        let drained = tracepoint.drainRecords()
        drained.bytes.withUnsafeBytes { all in
            for record in drained.records {
                let raw = UnsafeRawBufferPointer(rebasing: all[record.offset..<record.offset + record.count])
                if let change = decode(raw, timestampNs: record.timestampNs, pid: record.pid, port: port) { changes.append(change) }
            }
        }
        return changes.sorted { $0.timestampNs < $1.timestampNs }
    }
}
