import CSocketKit
import Glibc
import Synchronization
import SocketKit
import TCPTrace

/// Why no fault wire was started (outside the program's private namespace).
public struct FaultWireUnavailable: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// The fault layer of one run: three network namespaces joined only through the relay.
///
/// The client side is the namespace the program already runs in: the private user+net
/// namespace the demo and the lab re-execute themselves into (`unshare -Urn`), never the
/// host's. The server side and the relay each get a fresh network namespace inside it. Two
/// veth pairs join them, and nothing else does:
///
///     client sockets ── skcN 10.77.0.1/24 ═ skrN.0 ═ relay thread ═ skrN.1 ═ sksN 10.77.0.2/24 ── server sockets
///       (this namespace)                  (relay namespace: no addresses, AF_PACKET)      (server namespace)
///
/// The relay's namespace has no IP address, so its kernel never answers or forwards a frame:
/// what crosses is what the relay writes. The addresses are private and exist only inside
/// these namespaces; no interface of the host is touched, and the host's lo never carries a
/// segment of the run.
///
/// Sendable, checked: immutable apart from the teardown flag (atomic); the relay is Sendable.
public final class FaultWire: Sendable {
    public static let clientHost = "10.77.0.1"
    public static let serverHost = "10.77.0.2"
    /// Numbers each run's devices: a pair being deleted must not collide with the next one's.
    private static let runs = Mutex(0)

    public let serverNamespace: NetworkNamespace
    public let relayNamespace: NetworkNamespace
    public let clientDevice: String
    public let serverDevice: String
    public let relay: FaultRelay
    /// sock_diag for the server's namespace (a netlink socket sees only its own namespace).
    public let serverDiag: SockDiag?
    public let rules: [FaultRule]
    public let serverAddress: SocketAddress
    public let clientAddress: SocketAddress
    /// Set by the first teardown (`finish` or deinit).
    private let finished = Atomic<Bool>(false)

    /// Why this process may not start a fault wire here (nil: it may). Only inside the lab's
    /// private namespace: on the host, the client's TUN device would be the host's.
    public static func unavailableReason(insidePrivateNamespace: Bool) -> String? {
        guard insidePrivateNamespace else {
            return "the fault wire runs only inside a private user+net namespace (unshare -Urn), which is not available here"
        }
        return nil
    }

    /// Creates the server's and the relay's namespaces, both veth pairs, and starts the relay
    /// with `rules`. The client's device is created in the calling thread's namespace, so this
    /// refuses to run outside the program's private one (`insidePrivateNamespace`): it would
    /// otherwise add a device to the host.
    public init(rules: [FaultRule], insidePrivateNamespace: Bool) throws {
        if let reason = Self.unavailableReason(insidePrivateNamespace: insidePrivateNamespace) {
            throw FaultWireUnavailable(description: reason)
        }
        guard let server = SocketAddress(numericHost: Self.serverHost, port: 0),
              let client = SocketAddress(numericHost: Self.clientHost, port: 0) else {
            throw SystemCallError(call: "inet_pton", errno: EINVAL, subject: Self.serverHost)
        }
        serverAddress = server
        clientAddress = client
        self.rules = rules
        let run = Self.runs.locked { count in count += 1; return count % 10_000 }
        clientDevice = "skc\(run)"
        serverDevice = "sks\(run)"
        let here = try NetworkNamespace.current()
        serverNamespace = try NetworkNamespace.create()
        relayNamespace = try NetworkNamespace.create()
        let (clientDevice, serverDevice, serverNamespace) = (clientDevice, serverDevice, serverNamespace)
        let ports = try relayNamespace.run { () throws -> (RelayPort, RelayPort) in
            _ = try syscall("RTM_NEWLINK(veth)") { CSocketKit_veth_create("skr\(run).0", clientDevice, here.fd) }
            _ = try syscall("RTM_NEWLINK(veth)") { CSocketKit_veth_create("skr\(run).1", serverDevice, serverNamespace.fd) }
            // Open before either side's device is up: the first frame is already seen.
            let client = try RelayPort.open("skr\(run).0")
            do { return (client, try RelayPort.open("skr\(run).1")) } catch { client.close(); throw error }
        }
        do {
            try Interface.configure(clientDevice, address: client.addressBytes)
            try serverNamespace.run { try Interface.configure(serverDevice, address: server.addressBytes) }
        } catch {
            ports.0.close()
            ports.1.close()
            _ = CSocketKit_link_delete(clientDevice)
            throw error
        }
        serverDiag = try? serverNamespace.run { try SockDiag() }
        relay = try FaultRelay(clientPort: ports.0, serverPort: ports.1, rules: rules)
        readyAfterNs = Self.warmUp(toward: server)
    }

    /// How long the path took to carry a first round trip (nil: it never did within 3 s).
    public let readyAfterNs: UInt64?

    /// A device just brought up drops what it is asked to send until the kernel's link watcher
    /// activates it (up to a second later), and the first segment to a peer waits for ARP. So
    /// before the run: a UDP datagram to a closed port of the server, repeated every 50 ms until
    /// its ICMP port unreachable comes back (the connected socket reads ECONNREFUSED). Then both
    /// devices carry frames and both neighbour caches hold the other's MAC address; none of these
    /// frames is TCP, so none is in the run's record.
    static func warmUp(toward server: SocketAddress) -> UInt64? {
        // Port 9 (discard): nothing listens there in the server's fresh namespace.
        guard let probe = SocketAddress(numericHost: server.host, port: 9) else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        guard probe.withSockAddr({ connect(fd, $0, $1) }) == 0 else { return nil }
        let start = MonotonicClock.now()
        var byte: UInt8 = 0
        while MonotonicClock.now() - start < 3_000_000_000 {
            _ = send(fd, &byte, 1, 0)
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 50) == 1 {
                if recv(fd, &byte, 1, 0) == -1 && errno == ECONNREFUSED { return MonotonicClock.now() - start }
            }
        }
        return nil
    }

    deinit { tearDown() }

    /// Stops the relay and deletes the client's device (its veth peer goes with it) now, not
    /// when the relay's namespace is freed, which the kernel does later on a work queue.
    private func tearDown() {
        relay.stop()
        guard !finished.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = CSocketKit_link_delete(clientDevice)
    }

    /// Runs `body` in the server's namespace: the sockets it creates are the server's.
    public func inServerNamespace<T>(_ body: () throws -> T) throws -> T {
        try serverNamespace.run(body)
    }

    /// Stops the relay and turns what it handled into the run's segments, joined with `events`
    /// (states stamped with the segments that caused them); writes `pcapPath` when given, each
    /// faulted segment with its fate as a packet comment.
    public func finish(events: [TraceEvent], cutAtNs: UInt64? = nil, cutReason: String = "", pcapPath: String? = nil) throws -> WireRun {
        tearDown()
        let records = relay.records.enumerated().sorted { ($0.element.frame.monotonicNs, $0.offset) < ($1.element.frame.monotonicNs, $1.offset) }.map(\.element)
        let frames = records.map(\.frame)
        let cut = cutAtNs.map { (ns: $0, reason: cutReason) }
        var (run, kept, segments) = WireRun.assemble(frames: frames, faults: records.map(\.fault), link: .ethernet, cut: cut,
                                                     statistics: CaptureStatistics(relayed: frames.count),
                                                     events: events)
        run.captureNote = summaryNote
        if let pcapPath {
            try WirePcapExport.write(path: pcapPath, frames: kept, segments: segments, events: run.events, link: .ethernet,
                                     interfaceName: "fault relay \(clientDevice)⇄\(serverDevice)", snapLength: 65_535)
        }
        return run
    }

    /// What the relay did, for the summary line.
    var summaryNote: String {
        let records = relay.records
        let faulted = records.compactMap(\.fault)
        let cost = relay.cost
        var text = "relayed between two network namespaces (client \(Self.clientHost), server \(Self.serverHost))"
        text += readyAfterNs.map { ", path ready after \(TextTraceRenderer.duration($0))" } ?? ", path NOT ready within 3 s"
        let counts = ["dropped", "delayed", "duplicated", "injected"].compactMap { name -> String? in
            let n = faulted.filter { $0.name == name }.count
            return n == 0 ? nil : "\(n) \(name)"
        }
        text += counts.isEmpty ? ", no fault" : ", " + counts.joined(separator: ", ")
        text += "; relay cost \(TextTraceRenderer.duration(cost.meanNs)) per forwarded segment"
        if cost.notTCP > 0 { text += "; \(cost.notTCP) other frames (ARP, neighbour discovery) passed untouched" }
        if !faulted.isEmpty { text += "; in the ladder ──✕ is a segment the relay dropped, ┄┄ one the lab injected, and \"fault:\" says what was done" }
        return text
    }
}
