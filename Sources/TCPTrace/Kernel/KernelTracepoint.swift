import CSocketKit
import Glibc
import SocketKit
import Synchronization

/// An IP address as the tracepoint records it, in 16 bytes (network order): an IPv4 address
/// is kept IPv4-mapped (`::ffff:a.b.c.d`), so an AF_INET socket and an AF_INET6 socket talking
/// IPv4 compare equal. Fixed size: routing hashes and compares these, never text.
public struct KernelAddress: Hashable, Sendable {
    /// Bytes 0–7 and 8–15 as they lie in memory (not numbers: only compared and hashed).
    var high: UInt64, low: UInt64

    /// IPv4 bytes (network order, as in memory), stored IPv4-mapped.
    init(ipv4 bytes: UInt32) {
        var words: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) { raw in
            raw[10] = 0xff
            raw[11] = 0xff
            raw.storeBytes(of: bytes, toByteOffset: 12, as: UInt32.self)
        }
        (high, low) = words
    }

    /// 16 IPv6 bytes at `offset`.
    init(ipv6 raw: UnsafeRawBufferPointer, offset: Int) {
        high = raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        low = raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
    }

    /// A socket's address (a listener's wildcard included).
    init(_ address: SocketAddress) {
        switch address {
        case .v4(let a): self.init(ipv4: a.sin_addr.s_addr)
        case .v6(let a): self = withUnsafeBytes(of: a.sin6_addr) { KernelAddress(ipv6: $0, offset: 0) }
        }
    }

    /// Numeric text (`127.0.0.1`, `::1`, `::ffff:127.0.0.1`); nil when it is not an address.
    init?(text: String) {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipv4: v4.s_addr)
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            self = withUnsafeBytes(of: v6) { KernelAddress(ipv6: $0, offset: 0) }
        } else {
            return nil
        }
    }

    /// As inet_ntop prints it for a socket of `family`: dotted quad for AF_INET, else IPv6 text
    /// (`::ffff:a.b.c.d` for an IPv4-mapped address). Only for printing: routing never calls it.
    func text(family: Int32) -> String {
        withUnsafeBytes(of: (high, low)) { raw in
            if family == AF_INET {
                return StateChangeLayout.dottedQuad(UnsafeRawBufferPointer(rebasing: raw[12..<16]), prefix: "")
            }
            return StateChangeLayout.address(raw, TracepointField(offset: 0, size: 16, isSigned: false))
        }
    }
}

/// One TCP state change reported by the kernel tracepoint `sock:inet_sock_set_state`.
/// Fixed-size (no String, no array): decoding and routing one allocate nothing.
public struct KernelStateChange: Sendable, Equatable {
    /// CLOCK_MONOTONIC nanoseconds, comparable with `clock_gettime(CLOCK_MONOTONIC)`.
    public var timestampNs: UInt64
    /// The kernel's `struct sock` address: stable for one socket's life, then reused.
    public var skaddr: UInt64
    /// Kernel TCP state numbers (include/net/tcp_states.h): 1 ESTABLISHED … 7 CLOSE … 12 NEW_SYN_RECV.
    public var oldState: UInt8
    public var newState: UInt8
    /// AF_INET or AF_INET6.
    public var family: Int32
    /// Host byte order. 0 while the socket is not yet bound (CLOSE→SYN_SENT of a client).
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var source: KernelAddress
    public var destination: KernelAddress
    /// Process running on the CPU when the change happened. Changes driven by an incoming
    /// segment run in softirq context, so this is whoever was interrupted: on loopback usually
    /// the sending process, with a real NIC often 0 (idle) or an unrelated process.
    public var pid: Int32

    init(timestampNs: UInt64, skaddr: UInt64, oldState: UInt8, newState: UInt8, family: Int32,
         sourcePort: UInt16, destinationPort: UInt16, source: KernelAddress, destination: KernelAddress, pid: Int32) {
        self.timestampNs = timestampNs
        self.skaddr = skaddr
        self.oldState = oldState
        self.newState = newState
        self.family = family
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.source = source
        self.destination = destination
        self.pid = pid
    }

    /// From numeric address texts (tests, tools); an unparsable text reads as the zero address.
    public init(timestampNs: UInt64, skaddr: UInt64, oldState: UInt8, newState: UInt8, family: Int32,
                sourcePort: UInt16, destinationPort: UInt16, sourceAddress: String,
                destinationAddress: String, pid: Int32) {
        let zero = KernelAddress(ipv4: 0)
        self.init(timestampNs: timestampNs, skaddr: skaddr, oldState: oldState, newState: newState, family: family,
                  sourcePort: sourcePort, destinationPort: destinationPort,
                  source: KernelAddress(text: sourceAddress) ?? zero,
                  destination: KernelAddress(text: destinationAddress) ?? zero, pid: pid)
    }

    /// Text form; an AF_INET6 socket talking IPv4 shows `::ffff:a.b.c.d`.
    public var sourceAddress: String { source.text(family: family) }
    public var destinationAddress: String { destination.text(family: family) }
}

/// Every TCP state change of every full socket on the machine, read through `perf_event_open`
/// on the tracepoint `sock:inet_sock_set_state`: one event and one mmap'd ring per online CPU.
///
/// Needs root or CAP_PERFMON (system-wide raw tracepoint samples), and root to mount tracefs
/// when it is not mounted. Request socks (TCP_NEW_SYN_RECV) and TIME_WAIT are mini-sockets the
/// tracepoint never reports: a server's child appears as LISTEN→SYN_RECV when the handshake's
/// last ACK arrives, and an active closer's socket goes FIN_WAIT2→CLOSE. Only IPPROTO_TCP is
/// delivered (the same tracepoint also fires for SCTP and MPTCP sockets).
///
/// Wait for readability on `pollDescriptors` (poll/epoll, POLLIN), then call `drain()`.
/// Always drain fully after a wake-up: perf's poll reports a wake-up once, not while data remains.
public final class KernelTracepoint: Sendable {
    public enum Availability: Sendable, Equatable {
        case available
        case unavailable(reason: String)
    }

    public static let tracefsPath = "/sys/kernel/tracing"
    static let eventPath = tracefsPath + "/events/sock/inet_sock_set_state"

    /// Whether `init()` can succeed here without mounting anything, with a one-line reason when
    /// not. Actually tries: opens one event. Never mounts tracefs (a probe has no side effects).
    public static func availability() -> Availability {
        do {
            let (id, _) = try loadEvent(mayMount: false)
            guard let cpu = try onlineCPUs().first else { return .unavailable(reason: "no online CPU") }
            let (fd, _) = try openEvent(id: id, cpu: cpu)
            Glibc.close(fd)
            return .available
        } catch {
            return .unavailable(reason: reason(for: error))
        }
    }

    private struct Ring {
        var fd: Int32
        var base: UnsafeMutableRawPointer
    }

    private struct State {
        var rings: [Ring]
        /// read_format PERF_FORMAT_LOST is available (Linux 6.0+).
        var countsLost: Bool
        /// Sum of PERF_RECORD_LOST counts: the kernel writes one only once a record fits again.
        var recordedLost: UInt64 = 0
        /// Last sum of the events' own lost counters (kept after close()).
        var countedLost: UInt64 = 0
        var closed = false
        /// A drain found a ring (nearly) full: it may have dropped records not yet reported.
        var mayHaveLost = false
        /// The batch being sorted (when out of order), kept between drains: no allocation per change.
        var tagged: [(change: KernelStateChange, index: Int)] = []
        let samples: UnsafeMutablePointer<CSocketKit_perf_sample>
        let raw: UnsafeMutableRawPointer
    }

    private static let batchSamples = 4096
    private static let rawBytes = 4096 * 128
    private let pagesPerCPU: Int
    private let layout: StateChangeLayout
    private let state: Mutex<State>

    /// Opens one event per online CPU, each with a ring of `pagesPerCPU` data pages (a power of 2;
    /// a sample record is 104 bytes, so the default 64 pages hold ~2500 changes per CPU between drains).
    ///
    /// `wakeupEvents`: a descriptor turns readable every that many changes on its CPU. 1 gives
    /// the lowest latency but costs the traced connections ~5 µs per change (measured on a 2-vCPU
    /// VM: an irq_work self-IPI per wake-up); with more, also drain on a poll timeout, or a few
    /// changes can wait in the ring indefinitely.
    ///
    /// `mayMount`: mount tracefs when it is not mounted (only for an explicit `--kernel-trace on`:
    /// mounting changes the host).
    public init(pagesPerCPU: Int = 64, wakeupEvents: UInt32 = 1, mayMount: Bool = false) throws {
        precondition(pagesPerCPU > 0 && pagesPerCPU & (pagesPerCPU - 1) == 0, "pagesPerCPU: power of 2")
        precondition(wakeupEvents > 0, "wakeupEvents: at least 1")
        let (id, layout) = try Self.loadEvent(mayMount: mayMount)
        var rings: [Ring] = []
        var countsLost = true
        do {
            for cpu in try Self.onlineCPUs() {
                let fd: Int32
                (fd, countsLost) = try Self.openEvent(id: id, cpu: cpu, wakeupEvents: wakeupEvents,
                                                     countLost: countsLost)
                guard let base = CSocketKit_perf_mmap(fd, pagesPerCPU) else {
                    let code = errno
                    Glibc.close(fd)
                    throw SystemCallError(call: "mmap", errno: code, subject: "perf ring, cpu \(cpu)")
                }
                rings.append(Ring(fd: fd, base: base))
            }
            for ring in rings {
                _ = try syscall("ioctl") { CSocketKit_perf_enable(ring.fd) }
            }
        } catch {
            for ring in rings { Self.release(ring, pagesPerCPU: pagesPerCPU) }
            throw error
        }
        self.pagesPerCPU = pagesPerCPU
        self.layout = layout
        state = Mutex(State(
            rings: rings,
            countsLost: countsLost,
            samples: .allocate(capacity: Self.batchSamples),
            raw: .allocate(byteCount: Self.rawBytes, alignment: 8)))
    }

    deinit {
        close()
        state.locked { state in
            state.samples.deallocate()
            state.raw.deallocate()
        }
    }

    /// One perf descriptor per online CPU; readable (POLLIN) when its ring holds records.
    /// Empty after `close()`.
    public var pollDescriptors: [Int32] {
        state.locked { $0.rings.map(\.fd) }
    }

    /// State changes the kernel dropped so far because a ring was full. Exact and immediate on
    /// Linux 6.0+ (the events' lost counters); before, the sum of PERF_RECORD_LOST records, which
    /// the kernel writes only once a later record fits, i.e. after the next drain.
    /// Whether a drop has been seen or may have happened so far (a drain's PERF_RECORD_LOST, a
    /// ring found full, or a counter read): no syscall and no lock, for the per-observation
    /// check of a traced socket. A full ring reports its drops only with its next write, so a
    /// full ring alone already counts: the tracker then reads tcp_info again and asks the
    /// counters (`lostRecords`) before trusting the kernel's silence.
    public var hasLostRecords: Bool { anyLost.load(ordering: .acquiring) }
    private let anyLost = Atomic<Bool>(false)

    public var lostRecords: UInt64 {
        let lost = state.locked { state in
            Self.refreshLost(&state)
            return max(state.countedLost, state.recordedLost)
        }
        if lost > 0 { anyLost.store(true, ordering: .releasing) }
        return lost
    }

    private static func refreshLost(_ state: inout State) {
        guard state.countsLost, !state.rings.isEmpty else { return }
        var total: UInt64 = 0
        for ring in state.rings {
            var counts = CSocketKit_perf_counts()
            if read(ring.fd, &counts, MemoryLayout<CSocketKit_perf_counts>.size) == MemoryLayout<CSocketKit_perf_counts>.size {
                total += counts.lost
            }
        }
        state.countedLost = max(state.countedLost, total)
    }

    /// All pending TCP state changes from every CPU, sorted by timestamp. Order is only
    /// guaranteed within one batch: a CPU may still publish an earlier change after its ring
    /// was read for this batch, so it arrives in the next.
    public func drain() -> [KernelStateChange] {
        var changes: [KernelStateChange] = []
        drain(into: &changes)
        return changes
    }

    /// Whether any ring holds a record not drained yet: two loads a CPU under the lock that
    /// keeps the rings mapped, so an owner's observation can skip the drain, the routing and
    /// the hand-out when there is nothing (a third of them under connect churn, measured:
    /// 45,229 of 138,701 syncs found no record).
    func hasRecords() -> Bool {
        state.locked { state in
            for ring in state.rings where CSocketKit_perf_has_records(ring.base) != 0 { return true }
            return false
        }
    }

    /// `drain()`, appending to `changes` (whose capacity the caller keeps between drains).
    func drain(into changes: inout [KernelStateChange]) {
        state.locked { state in
            defer { if state.recordedLost > 0 || state.mayHaveLost { anyLost.store(true, ordering: .releasing) } }
            let start = changes.count
            var inOrder = true
            var previousNs: UInt64 = 0
            Self.readRings(&state, pagesPerCPU: pagesPerCPU) { _, raw, sample, _ in
                if let change = layout.decode(raw, timestampNs: sample.time, pid: sample.pid) {
                    if change.timestampNs < previousNs { inOrder = false }
                    previousNs = change.timestampNs
                    changes.append(change)
                }
            }
            // Appended ring by ring, each in its own order: when the timestamps never go back,
            // that is already (time, ring, position) order, and sorting is skipped (most
            // drains under churn: ~600 instructions a connection, callgrind).
            guard !inOrder else { return }
            Self.sortByTime(&changes, from: start, tagged: &state.tagged)
        }
    }

    /// Sorts `changes[start...]` by timestamp, ties in drain order (ring, then position): within
    /// one CPU an interrupt's record can land before the one it interrupted, so a ring's order
    /// is not always timestamp order either.
    private static func sortByTime(_ changes: inout [KernelStateChange], from start: Int,
                                   tagged: inout [(change: KernelStateChange, index: Int)]) {
        tagged.removeAll(keepingCapacity: true)
        for index in start..<changes.count { tagged.append((changes[index], index)) }
        tagged.sort { ($0.change.timestampNs, $0.index) < ($1.change.timestampNs, $1.index) }
        for (offset, entry) in tagged.enumerated() { changes[start + offset] = entry.change }
    }

    /// The raw records, undecoded and unsorted, with their CLOCK_MONOTONIC time and pid: for a
    /// reader that decodes them with its own code (the tests' oracle). All records' bytes in one
    /// buffer (`bytes[offset..<offset + count]`), so a drain allocates twice, not per record.
    package func drainRecords() -> (bytes: [UInt8], records: [(offset: Int, count: Int, timestampNs: UInt64, pid: Int32)]) {
        state.locked { state in
            var bytes: [UInt8] = []
            var records: [(offset: Int, count: Int, timestampNs: UInt64, pid: Int32)] = []
            Self.readRings(&state, pagesPerCPU: pagesPerCPU) { _, raw, sample, _ in
                records.append((bytes.count, raw.count, sample.time, sample.pid))
                bytes.append(contentsOf: raw)
            }
            return (bytes, records)
        }
    }

    /// Reads every ring, each bounded: at most `maxRecordsPerDrain` records per ring however
    /// fast the kernel refills it (a busy host's churn must not keep one drain going); what is
    /// left is read by the next drain, and a ring that fills meanwhile drops records, which
    /// `lostRecords` counts.
    private static func readRings(
        _ state: inout State, pagesPerCPU: Int,
        _ visit: (_ ring: Int, _ raw: UnsafeRawBufferPointer, _ sample: CSocketKit_perf_sample, _ state: inout State) -> Void
    ) {
        for ringIndex in state.rings.indices {
            let ring = state.rings[ringIndex]
            var read = 0
            while read < maxRecordsPerDrain {
                let result = CSocketKit_perf_drain(ring.base, pagesPerCPU, state.samples, batchSamples, state.raw, rawBytes)
                state.recordedLost += result.lost
                if result.was_full != 0 { state.mayHaveLost = true }
                read += Int(result.samples)
                for i in 0..<Int(result.samples) {
                    let sample = state.samples[i]
                    let raw = UnsafeRawBufferPointer(start: state.raw + Int(sample.raw_offset), count: Int(sample.raw_size))
                    visit(ringIndex, raw, sample, &state)
                }
                if result.more == 0 { break }
            }
        }
    }

    /// Records one drain reads from one ring at most (a 64-page ring holds ~2,500).
    static let maxRecordsPerDrain = 4 * batchSamples

    /// Disables and unmaps every ring and closes the descriptors. Idempotent.
    public func close() {
        state.locked { state in
            guard !state.closed else { return }
            Self.refreshLost(&state)
            for ring in state.rings { Self.release(ring, pagesPerCPU: pagesPerCPU) }
            state.rings = []
            state.closed = true
        }
    }

    // MARK: - Setup

    private static func release(_ ring: Ring, pagesPerCPU: Int) {
        _ = CSocketKit_perf_disable(ring.fd)
        _ = CSocketKit_perf_munmap(ring.base, pagesPerCPU)
        Glibc.close(ring.fd)
    }

    /// The descriptor, and whether it counts lost samples (retried without before Linux 6.0).
    private static func openEvent(id: UInt64, cpu: Int32, wakeupEvents: UInt32 = 1, countLost: Bool = true)
        throws(SystemCallError) -> (Int32, countsLost: Bool) {
        do {
            let fd = try syscall("perf_event_open") {
                CSocketKit_perf_open_tracepoint(id, cpu, CLOCK_MONOTONIC, wakeupEvents, countLost ? 1 : 0)
            }
            return (fd, countLost)
        } catch {
            if countLost && error.errno == EINVAL { return try openEvent(id: id, cpu: cpu, wakeupEvents: wakeupEvents, countLost: false) }
            throw error.on("sock:inet_sock_set_state, cpu \(cpu)")
        }
    }

    /// The event id and its record layout, mounting tracefs first if it is not mounted and
    /// `mayMount` (else: `tracefsNotMounted` with errno 0, "not tried").
    static func loadEvent(mayMount: Bool) throws -> (UInt64, StateChangeLayout) {
        let idPath = eventPath + "/id", formatPath = eventPath + "/format"
        var idText = try TextFile.readIfPresent(idPath)
        if idText == nil {
            guard !tracefsMounted() else { throw KernelTracepointError.eventMissing(path: eventPath) }
            guard mayMount else { throw KernelTracepointError.tracefsNotMounted(path: tracefsPath, mountErrno: 0) }
            if mount("nodev", tracefsPath, "tracefs", 0, nil) != 0 {
                throw KernelTracepointError.tracefsNotMounted(path: tracefsPath, mountErrno: errno)
            }
            idText = try TextFile.readIfPresent(idPath)
        }
        guard let idText else { throw KernelTracepointError.eventMissing(path: eventPath) }
        guard let id = UInt64(idText.filter { !$0.isWhitespace }) else {
            throw KernelTracepointError.unparsable(path: idPath, detail: "not a number: '\(idText)'")
        }
        let format = try TracepointFormat(parsing: try TextFile.read(formatPath), path: formatPath)
        return (id, try StateChangeLayout(format, path: formatPath))
    }

    /// tracefs' mount point exists (as an empty directory) even when nothing is mounted on it.
    static func tracefsMounted() -> Bool {
        guard let dir = opendir(tracefsPath + "/events") else { return false }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { return true }
        }
        return false
    }

    static func onlineCPUs() throws -> [Int32] {
        let path = "/sys/devices/system/cpu/online"
        let text = try TextFile.read(path)
        guard let cpus = parseCPUList(text) else {
            throw KernelTracepointError.unparsable(path: path, detail: "not a CPU list: '\(text)'")
        }
        return cpus
    }

    /// The one-line reason an open failed, with the privilege hint when that is the cause.
    static func reason(for error: any Error) -> String {
        guard let error = error as? SystemCallError else { return "\(error)" }
        if error.call == "perf_event_open" && (error.errno == EACCES || error.errno == EPERM) {
            let paranoid = (try? TextFile.read("/proc/sys/kernel/perf_event_paranoid"))?
                .filter { !$0.isWhitespace } ?? "?"
            return "needs root or CAP_PERFMON (perf_event_paranoid=\(paranoid))"
        }
        return error.errno == EACCES ? "needs root: \(error)" : "\(error)"
    }
}
