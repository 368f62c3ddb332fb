import CSocketKit
import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

/// Captured from Linux 6.18: /sys/kernel/tracing/events/sock/inet_sock_set_state/format.
let capturedFormat = #"""
name: inet_sock_set_state
ID: 2287
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:int oldstate;	offset:16;	size:4;	signed:1;
	field:int newstate;	offset:20;	size:4;	signed:1;
	field:__u16 sport;	offset:24;	size:2;	signed:0;
	field:__u16 dport;	offset:26;	size:2;	signed:0;
	field:__u16 family;	offset:28;	size:2;	signed:0;
	field:__u16 protocol;	offset:30;	size:2;	signed:0;
	field:__u8 saddr[4];	offset:32;	size:4;	signed:0;
	field:__u8 daddr[4];	offset:36;	size:4;	signed:0;
	field:__u8 saddr_v6[16];	offset:40;	size:16;	signed:0;
	field:__u8 daddr_v6[16];	offset:56;	size:16;	signed:0;

print fmt: "family=%s protocol=%s sport=%hu dport=%hu saddr=%pI4 daddr=%pI4 saddrv6=%pI6c daddrv6=%pI6c oldstate=%s newstate=%s", __print_symbolic(REC->family, { 2, "AF_INET" }, { 10, "AF_INET6" }), __print_symbolic(REC->protocol, { 6, "IPPROTO_TCP" }, { 132, "IPPROTO_SCTP" }, { 262, "IPPROTO_MPTCP" }), REC->sport, REC->dport, REC->saddr, REC->daddr, REC->saddr_v6, REC->daddr_v6, __print_symbolic(REC->oldstate, { 1, "TCP_ESTABLISHED" }, { 2, "TCP_SYN_SENT" }, { 3, "TCP_SYN_RECV" }, { 4, "TCP_FIN_WAIT1" }, { 5, "TCP_FIN_WAIT2" }, { 6, "TCP_TIME_WAIT" }, { 7, "TCP_CLOSE" }, { 8, "TCP_CLOSE_WAIT" }, { 9, "TCP_LAST_ACK" }, { 10, "TCP_LISTEN" }, { 11, "TCP_CLOSING" }, { 12, "TCP_NEW_SYN_RECV" }), __print_symbolic(REC->newstate, { 1, "TCP_ESTABLISHED" }, { 2, "TCP_SYN_SENT" }, { 3, "TCP_SYN_RECV" }, { 4, "TCP_FIN_WAIT1" }, { 5, "TCP_FIN_WAIT2" }, { 6, "TCP_TIME_WAIT" }, { 7, "TCP_CLOSE" }, { 8, "TCP_CLOSE_WAIT" }, { 9, "TCP_LAST_ACK" }, { 10, "TCP_LISTEN" }, { 11, "TCP_CLOSING" }, { 12, "TCP_NEW_SYN_RECV" })
"""#

// Kernel TCP state numbers (include/net/tcp_states.h).
private let ESTABLISHED: UInt8 = 1, SYN_SENT: UInt8 = 2, SYN_RECV: UInt8 = 3, FIN_WAIT1: UInt8 = 4,
    FIN_WAIT2: UInt8 = 5, CLOSE: UInt8 = 7, CLOSE_WAIT: UInt8 = 8, LAST_ACK: UInt8 = 9, LISTEN: UInt8 = 10

@Suite struct KernelTracepointFormatTests {
    @Test func parsesCapturedFormat() throws {
        let format = try TracepointFormat(parsing: capturedFormat)
        #expect(format.name == "inet_sock_set_state")
        #expect(format.id == 2287)
        #expect(format.fields["common_pid"] == TracepointField(offset: 4, size: 4, isSigned: true))
        #expect(format.fields["skaddr"] == TracepointField(offset: 8, size: 8, isSigned: false))
        #expect(format.fields["oldstate"] == TracepointField(offset: 16, size: 4, isSigned: true))
        #expect(format.fields["newstate"] == TracepointField(offset: 20, size: 4, isSigned: true))
        #expect(format.fields["sport"]?.offset == 24)
        #expect(format.fields["dport"]?.offset == 26)
        #expect(format.fields["family"]?.offset == 28)
        #expect(format.fields["protocol"]?.offset == 30)
        #expect(format.fields["saddr"] == TracepointField(offset: 32, size: 4, isSigned: false))
        #expect(format.fields["daddr"]?.offset == 36)
        #expect(format.fields["saddr_v6"] == TracepointField(offset: 40, size: 16, isSigned: false))
        #expect(format.fields["daddr_v6"] == TracepointField(offset: 56, size: 16, isSigned: false))
        #expect(try StateChangeLayout(format).minimumRecordSize == 72)
    }

    @Test func decodesSyntheticRecords() throws {
        let layout = try StateChangeLayout(TracepointFormat(parsing: capturedFormat))
        var record = [UInt8](repeating: 0, count: 76)  // the kernel pads raw data to 8 bytes with its size word
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { record.replaceSubrange(offset..<offset + $0.count, with: $0) }
        }
        put(UInt64(0xffff_8880_1234_5678), at: 8)
        put(Int32(CLOSE), at: 16)
        put(Int32(SYN_SENT), at: 20)
        put(UInt16(0), at: 24)
        put(UInt16(7007), at: 26)
        put(UInt16(AF_INET), at: 28)
        put(UInt16(6), at: 30)
        record.replaceSubrange(32..<40, with: [127, 0, 0, 1, 10, 1, 2, 3])
        record.replaceSubrange(40..<56, with: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1])
        let v4 = record.withUnsafeBytes { layout.decode($0, timestampNs: 42, pid: 7) }
        #expect(v4 == KernelStateChange(
            timestampNs: 42, skaddr: 0xffff_8880_1234_5678, oldState: CLOSE, newState: SYN_SENT,
            family: AF_INET, sourcePort: 0, destinationPort: 7007, sourceAddress: "127.0.0.1",
            destinationAddress: "10.1.2.3", pid: 7))

        put(UInt16(AF_INET6), at: 28)
        record.replaceSubrange(56..<72, with: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1])
        let v6 = record.withUnsafeBytes { layout.decode($0, timestampNs: 42, pid: 7) }
        #expect(v6?.sourceAddress == "::ffff:127.0.0.1")
        #expect(v6?.destinationAddress == "2001:db8::1")

        put(UInt16(132), at: 30)  // IPPROTO_SCTP: not TCP, dropped
        #expect(record.withUnsafeBytes { layout.decode($0, timestampNs: 0, pid: 0) } == nil)
        #expect(record.withUnsafeBytes { layout.decode(UnsafeRawBufferPointer(rebasing: $0[0..<40]), timestampNs: 0, pid: 0) } == nil)
    }

    @Test func rejectsFormatsWithoutTheFields() {
        #expect(throws: KernelTracepointError.self) { try TracepointFormat(parsing: "name: x\nID: 1\nformat:\n") }
        let noDaddr = capturedFormat.split(separator: "\n").filter { !$0.contains("daddr_v6") }.joined(separator: "\n")
        #expect(throws: KernelTracepointError.unparsable(path: "format", detail: "no field daddr_v6")) {
            try StateChangeLayout(TracepointFormat(parsing: noDaddr))
        }
    }

    @Test func parsesCPULists() {
        #expect(parseCPUList("0-1\n") == [0, 1])
        #expect(parseCPUList("0") == [0])
        #expect(parseCPUList("0,2-4,7\n") == [0, 2, 3, 4, 7])
        #expect(parseCPUList("") == nil)
        #expect(parseCPUList("3-1") == nil)
        #expect(parseCPUList("a") == nil)
    }
}

// MARK: - Live

private func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

private func loopbackAddress(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return address
}

private func withSockaddr<R>(_ address: inout sockaddr_in, _ body: (UnsafeMutablePointer<sockaddr>, socklen_t) -> R) -> R {
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

private func localPort(_ fd: Int32) -> UInt16 {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
}

/// One loopback connection where the client closes first; returns (listening port, client port).
func loopbackExchange() throws -> (server: UInt16, client: UInt16) {
    let stream = Int32(SOCK_STREAM.rawValue)
    let listener = socket(AF_INET, stream, 0)
    var any = loopbackAddress(port: 0)
    try #require(withSockaddr(&any) { bind(listener, $0, $1) } == 0)
    try #require(listen(listener, 8) == 0)
    let serverPort = localPort(listener)

    let client = socket(AF_INET, stream, 0)
    var server = loopbackAddress(port: serverPort)
    try #require(withSockaddr(&server) { connect(client, $0, $1) } == 0)
    let clientPort = localPort(client)
    let child = accept(listener, nil, nil)
    try #require(child >= 0)

    try #require(Glibc.close(client) == 0)  // FIN first: client goes FIN_WAIT1 → FIN_WAIT2
    var byte: UInt8 = 0
    #expect(read(child, &byte, 1) == 0)      // the FIN arrived: child is in CLOSE_WAIT
    try #require(Glibc.close(child) == 0)    // LAST_ACK, then CLOSE on the client's ACK
    try #require(Glibc.close(listener) == 0)
    return (serverPort, clientPort)
}

private let liveAvailability: KernelTracepoint.Availability = {
    let availability = KernelTracepoint.availability()
    guard geteuid() != 0 else { return availability }
    return .unavailable(reason: "not root" + (availability == .available ? "" : "; \(availability)"))
}()

// Serialized: the struct sock of one test's socket is soon reused for the next test's.
@Suite(.serialized) struct KernelTracepointLiveTests {
    @Test(.enabled(if: liveAvailability == .available, "needs root and perf_event_open: \(liveAvailability)"))
    func reportsLoopbackConnectionLifecycle() throws {
        // 2 MiB per CPU: room for ~20k changes of other processes while this test sleeps.
        let tracepoint = try KernelTracepoint(pagesPerCPU: Oracle.pagesPerCPU)
        defer { tracepoint.close() }
        #expect(tracepoint.pollDescriptors.count == (try KernelTracepoint.onlineCPUs()).count)

        let before = monotonicNs()
        let (serverPort, clientPort) = try loopbackExchange()
        var fds = tracepoint.pollDescriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        #expect(poll(&fds, nfds_t(fds.count), 1000) > 0)

        var changes: [KernelStateChange] = []
        for _ in 0..<50 {
            let batch = tracepoint.drain()
            #expect(batch.map(\.timestampNs) == batch.map(\.timestampNs).sorted())
            changes += batch
            if changes.contains(where: { $0.sourcePort == serverPort && $0.newState == CLOSE && $0.destinationPort == clientPort }) { break }
            usleep(10_000)
        }
        // The client's last ACK is processed in softirq, possibly after close() returned: the
        // upper bound is taken once the child's CLOSE has been read.
        let after = monotonicNs()
        changes.sort { $0.timestampNs < $1.timestampNs }  // ordered within a batch only
        #expect(tracepoint.lostRecords == 0)

        let clientSocket = try #require(changes.first { $0.sourcePort == clientPort && $0.destinationPort == serverPort }).skaddr
        let childSocket = try #require(changes.first { $0.sourcePort == serverPort && $0.destinationPort == clientPort }).skaddr
        let listenerSocket = try #require(changes.first { $0.sourcePort == serverPort && $0.newState == LISTEN }).skaddr
        // skaddr identifies a socket only during its life (slabs are reused), so match ports too.
        func isClient(_ c: KernelStateChange) -> Bool {
            c.skaddr == clientSocket && c.destinationPort == serverPort && [0, clientPort].contains(c.sourcePort)
        }
        func isChild(_ c: KernelStateChange) -> Bool {
            c.skaddr == childSocket && c.sourcePort == serverPort && c.destinationPort == clientPort
        }
        func isListener(_ c: KernelStateChange) -> Bool {
            c.skaddr == listenerSocket && c.sourcePort == serverPort && c.destinationPort == 0
        }
        func transitions(_ belongs: (KernelStateChange) -> Bool) -> [[UInt8]] {
            changes.filter(belongs).map { [$0.oldState, $0.newState] }
        }
        #expect(transitions(isClient) == [[CLOSE, SYN_SENT], [SYN_SENT, ESTABLISHED], [ESTABLISHED, FIN_WAIT1],
                                              [FIN_WAIT1, FIN_WAIT2], [FIN_WAIT2, CLOSE]])
        #expect(transitions(isListener) == [[CLOSE, LISTEN], [LISTEN, CLOSE]])
        // The child is cloned from the listener, hence LISTEN→SYN_RECV, reported only when the
        // handshake's final ACK arrives (the request sock before it is never traced).
        #expect(transitions(isChild) == [[LISTEN, SYN_RECV], [SYN_RECV, ESTABLISHED], [ESTABLISHED, CLOSE_WAIT],
                                             [CLOSE_WAIT, LAST_ACK], [LAST_ACK, CLOSE]])

        let ours = changes.filter { isClient($0) || isChild($0) || isListener($0) }
        for change in ours {
            #expect(change.timestampNs > before && change.timestampNs < after)
            #expect(change.family == AF_INET)
            #expect(change.sourceAddress == "127.0.0.1" && change.destinationAddress == (isListener(change) ? "0.0.0.0" : "127.0.0.1"))
        }
        // The client is not bound to a port until connect() has moved it to SYN_SENT.
        #expect(ours.first(where: isClient)?.sourcePort == 0)
    }

    @Test(.enabled(if: liveAvailability == .available, "needs root and perf_event_open: \(liveAvailability)"))
    func countsRecordsLostToAFullRing() throws {
        let tracepoint = try KernelTracepoint(pagesPerCPU: 1)  // 4 KiB: 39 records of 104 bytes per CPU
        defer { tracepoint.close() }
        for _ in 0..<10 { _ = try loopbackExchange() }       // ≥ 110 changes, none drained meanwhile
        var drained = tracepoint.drain().count
        // Before Linux 6.0 the loss is only reported by a PERF_RECORD_LOST once a record fits again.
        _ = try loopbackExchange()
        drained += tracepoint.drain().count
        #expect(tracepoint.lostRecords > 0)
        #expect(UInt64(drained) + tracepoint.lostRecords >= 120)
        tracepoint.close()
        #expect(tracepoint.pollDescriptors.isEmpty)
        #expect(tracepoint.drain().isEmpty)
        #expect(tracepoint.lostRecords > 0)
    }
}
