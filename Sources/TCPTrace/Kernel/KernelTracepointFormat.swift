import CSocketKit
import Glibc
import SocketKit

/// Failures of the tracepoint reader that carry no errno.
public enum KernelTracepointError: Error, Equatable, Sendable, CustomStringConvertible {
    /// tracefs is not mounted and mounting it failed (usually EPERM: only root may mount), or
    /// was not tried (`mountErrno` 0: only `--kernel-trace on` mounts it).
    case tracefsNotMounted(path: String, mountErrno: Int32)
    /// tracefs is there but the event is not: a kernel without `sock:inet_sock_set_state`.
    case eventMissing(path: String)
    /// A tracefs or sysfs file did not have the expected shape.
    case unparsable(path: String, detail: String)

    public var description: String {
        switch self {
        case let .tracefsNotMounted(path, 0):
            return "tracefs not mounted at \(path) (only --kernel-trace on mounts it)"
        case let .tracefsNotMounted(path, code):
            let hint = code == EPERM ? " (mounting needs root)" : ""
            return "tracefs not mounted at \(path) and mount failed: \(Errno.message(code)) (errno \(code))\(hint)"
        case let .eventMissing(path):
            return "tracepoint sock:inet_sock_set_state not found at \(path) (kernel without it?)"
        case let .unparsable(path, detail):
            return "cannot parse \(path): \(detail)"
        }
    }
}

/// Where one field sits in a tracepoint's raw record, as tracefs' `format` file states it.
struct TracepointField: Equatable, Sendable {
    var offset: Int
    var size: Int
    var isSigned: Bool
}

/// A parsed tracefs `format` file: field name (array suffix stripped) to placement.
struct TracepointFormat: Equatable, Sendable {
    var name: String
    var id: UInt64?
    var fields: [String: TracepointField]

    /// Lines look like `\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;`.
    init(parsing text: String, path: String = "format") throws(KernelTracepointError) {
        name = ""
        fields = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("name:") {
                name = String(line.dropFirst(5)).trimmedWhitespace
            } else if line.hasPrefix("ID:") {
                id = UInt64(String(line.dropFirst(3)).trimmedWhitespace)
            }
            let trimmed = String(line).trimmedWhitespace
            guard trimmed.hasPrefix("field:") else { continue }
            var declaration: Substring?
            var offset: Int?, size: Int?, signed: Bool?
            for part in trimmed.split(separator: ";") {
                let item = String(part).trimmedWhitespace
                guard let colon = item.firstIndex(of: ":") else { continue }
                let key = item[..<colon], value = item[item.index(after: colon)...]
                switch key {
                case "field": declaration = value
                case "offset": offset = Int(value)
                case "size": size = Int(value)
                case "signed": signed = value == "1"
                default: break
                }
            }
            guard let declaration, let offset, let size, offset >= 0, size > 0,
                  let last = declaration.split(whereSeparator: { $0 == " " || $0 == "*" }).last
            else { throw .unparsable(path: path, detail: "bad field line '\(trimmed)'") }
            let fieldName = String(last.prefix { $0 != "[" })
            fields[fieldName] = TracepointField(offset: offset, size: size, isSigned: signed ?? false)
        }
        if fields.isEmpty { throw .unparsable(path: path, detail: "no field lines") }
    }
}

/// The placement of the fields we decode, checked once against the kernel's format file.
struct StateChangeLayout: Sendable {
    var skaddr, oldState, newState, sport, dport, family, saddr, daddr, saddrV6, daddrV6: TracepointField
    /// Absent before Linux 4.16's SCTP support; when present we keep only IPPROTO_TCP.
    var proto: TracepointField?
    var minimumRecordSize: Int

    init(_ format: TracepointFormat, path: String = "format") throws(KernelTracepointError) {
        func field(_ name: String, sizes: Set<Int>) throws(KernelTracepointError) -> TracepointField {
            guard let f = format.fields[name] else { throw .unparsable(path: path, detail: "no field \(name)") }
            guard sizes.contains(f.size) else {
                throw .unparsable(path: path, detail: "field \(name) has size \(f.size)")
            }
            return f
        }
        let integer: Set<Int> = [1, 2, 4, 8]
        skaddr = try field("skaddr", sizes: [4, 8])
        oldState = try field("oldstate", sizes: integer)
        newState = try field("newstate", sizes: integer)
        sport = try field("sport", sizes: integer)
        dport = try field("dport", sizes: integer)
        family = try field("family", sizes: integer)
        saddr = try field("saddr", sizes: [4])
        daddr = try field("daddr", sizes: [4])
        saddrV6 = try field("saddr_v6", sizes: [16])
        daddrV6 = try field("daddr_v6", sizes: [16])
        proto = format.fields["protocol"].flatMap { integer.contains($0.size) ? $0 : nil }
        let all = [skaddr, oldState, newState, sport, dport, family, saddr, daddr, saddrV6, daddrV6]
            + (proto.map { [$0] } ?? [])
        minimumRecordSize = all.map { $0.offset + $0.size }.max() ?? 0
    }

    /// Decodes one raw record; nil for a short record or another protocol than TCP.
    func decode(_ raw: UnsafeRawBufferPointer, timestampNs: UInt64, pid: Int32) -> KernelStateChange? {
        guard raw.count >= minimumRecordSize else { return nil }
        if let proto, Self.unsigned(raw, proto) != UInt64(IPPROTO_TCP) { return nil }
        let family = Int32(truncatingIfNeeded: Self.unsigned(raw, family))
        let v6 = family == AF_INET6
        return KernelStateChange(
            timestampNs: timestampNs,
            skaddr: Self.unsigned(raw, skaddr),
            oldState: UInt8(truncatingIfNeeded: Self.unsigned(raw, oldState)),
            newState: UInt8(truncatingIfNeeded: Self.unsigned(raw, newState)),
            family: family,
            // The tracepoint stores ports already converted with ntohs.
            sourcePort: UInt16(truncatingIfNeeded: Self.unsigned(raw, sport)),
            destinationPort: UInt16(truncatingIfNeeded: Self.unsigned(raw, dport)),
            source: Self.kernelAddress(raw, v6 ? saddrV6 : saddr),
            destination: Self.kernelAddress(raw, v6 ? daddrV6 : daddr),
            pid: pid)
    }

    static func unsigned(_ raw: UnsafeRawBufferPointer, _ f: TracepointField) -> UInt64 {
        switch f.size {
        case 1: UInt64(raw.loadUnaligned(fromByteOffset: f.offset, as: UInt8.self))
        case 2: UInt64(raw.loadUnaligned(fromByteOffset: f.offset, as: UInt16.self))
        case 4: UInt64(raw.loadUnaligned(fromByteOffset: f.offset, as: UInt32.self))
        default: raw.loadUnaligned(fromByteOffset: f.offset, as: UInt64.self)
        }
    }

    /// A 4-byte (IPv4) or 16-byte address field, without formatting it.
    static func kernelAddress(_ raw: UnsafeRawBufferPointer, _ f: TracepointField) -> KernelAddress {
        f.size == 4 ? KernelAddress(ipv4: raw.loadUnaligned(fromByteOffset: f.offset, as: UInt32.self))
            : KernelAddress(ipv6: raw, offset: f.offset)
    }

    /// Network-order address bytes to text, as inet_ntop prints them (`127.0.0.1`, `::1`,
    /// `::ffff:127.0.0.1`). IPv4 and IPv4-mapped addresses — every loopback change under load —
    /// are formatted byte by byte: inet_ntop's snprintf and the array around it were a visible
    /// share of the traced server's CPU under connect churn (perf record).
    static func address(_ raw: UnsafeRawBufferPointer, _ f: TracepointField) -> String {
        guard let base = raw.baseAddress else { return "?" }
        let bytes = UnsafeRawBufferPointer(start: base + f.offset, count: f.size)
        if f.size == 4 { return dottedQuad(bytes, prefix: "") }
        if f.size == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return dottedQuad(UnsafeRawBufferPointer(rebasing: bytes[12..<16]), prefix: "::ffff:")
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(f.size == 16 ? AF_INET6 : AF_INET, bytes.baseAddress, &text, socklen_t(text.count)) != nil
        else { return "?" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func dottedQuad(_ four: UnsafeRawBufferPointer, prefix: StaticString) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { out in
            var n = 0
            prefix.withUTF8Buffer { for byte in $0 { out[n] = byte; n += 1 } }
            for index in 0..<4 {
                if index > 0 { out[n] = UInt8(ascii: "."); n += 1 }
                let value = four[index]
                if value >= 100 { out[n] = 0x30 + value / 100; n += 1 }
                if value >= 10 { out[n] = 0x30 + (value / 10) % 10; n += 1 }
                out[n] = 0x30 + value % 10; n += 1
            }
            return String(decoding: UnsafeBufferPointer(rebasing: out[0..<n]), as: UTF8.self)
        }
    }
}

/// Parses sysfs CPU lists such as `0-3,6,8-9`.
func parseCPUList(_ text: String) -> [Int32]? {
    var cpus: [Int32] = []
    for range in text.trimmedWhitespace.split(separator: ",") {
        let bounds = range.split(separator: "-").map { Int32($0) }
        guard bounds.allSatisfy({ $0 != nil }), let low = bounds.first ?? nil else { return nil }
        switch bounds.count {
        case 1: cpus.append(low)
        case 2 where bounds[1]! >= low: cpus.append(contentsOf: low...bounds[1]!)
        default: return nil
        }
    }
    return cpus.isEmpty ? nil : cpus
}
