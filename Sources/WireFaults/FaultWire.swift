import Glibc
import SocketKit
import TCPTrace

/// The fault layer of one run: the server's own network namespace, one TUN device on each
/// side, and the relay between them.
///
/// The client side is the namespace the program already runs in: the private user+net
/// namespace the demo and the lab re-execute themselves into (`unshare -Urn`), never the
/// host's. The server side is a fresh network namespace inside it. The two are joined only
/// through the relay:
///
///     client sockets ── skc0 10.77.0.1/24 ══ relay thread ══ sks0 10.77.0.2/24 ── server sockets
///        (this namespace)                  (drop, hold, copy, inject)         (a namespace of its own)
///
/// The addresses are private and exist only inside these namespaces; no interface of the
/// host is touched, and the host's lo never carries a segment of the run.
public final class FaultWire: @unchecked Sendable {
    public static let clientHost = "10.77.0.1"
    public static let serverHost = "10.77.0.2"
    public static let clientDevice = "skc0"
    public static let serverDevice = "sks0"

    public let serverNamespace: NetworkNamespace
    public let relay: FaultRelay
    /// sock_diag for the server's namespace (a netlink socket sees only its own namespace).
    public let serverDiag: SockDiag?
    public let rules: [FaultRule]
    public let serverAddress: SocketAddress
    public let clientAddress: SocketAddress
    private var finished = false

    /// Why this process may not start a fault wire here (nil: it may). Only inside the lab's
    /// private namespace: on the host, the client's TUN device would be the host's.
    public static func unavailableReason(insidePrivateNamespace: Bool) -> String? {
        guard insidePrivateNamespace else {
            return "the fault wire runs only inside a private user+net namespace (unshare -Urn), which is not available here"
        }
        guard access("/dev/net/tun", R_OK | W_OK) == 0 else { return "/dev/net/tun is not available (\(Errno.name(errno)))" }
        return nil
    }

    /// Creates the server's namespace, both devices, and starts the relay with `rules`.
    public init(rules: [FaultRule]) throws {
        guard let server = SocketAddress(numericHost: Self.serverHost, port: 0),
              let client = SocketAddress(numericHost: Self.clientHost, port: 0) else {
            throw SystemCallError(call: "inet_pton", errno: EINVAL, subject: Self.serverHost)
        }
        serverAddress = server
        clientAddress = client
        self.rules = rules
        serverNamespace = try NetworkNamespace.create()
        let clientTun = try TunDevice.create(name: Self.clientDevice, address: client.addressBytes)
        let serverTun: TunDevice
        do {
            serverTun = try serverNamespace.run { try TunDevice.create(name: Self.serverDevice, address: server.addressBytes) }
        } catch {
            clientTun.close()
            throw error
        }
        serverDiag = try? serverNamespace.run { try SockDiag() }
        relay = try FaultRelay(clientTun: clientTun, serverTun: serverTun, rules: rules)
    }

    deinit { relay.stop() }

    /// Runs `body` in the server's namespace: the sockets it creates are the server's.
    public func inServerNamespace<T>(_ body: () throws -> T) throws -> T {
        try serverNamespace.run(body)
    }

    /// Stops the relay and turns what it handled into the run's segments, joined with `events`
    /// (states stamped with the segments that caused them); writes `pcapPath` when given, each
    /// faulted segment with its fate as a packet comment.
    public func finish(events: [TraceEvent], cutAtNs: UInt64? = nil, cutReason: String = "", pcapPath: String? = nil) throws -> WireRun {
        relay.stop()
        let records = relay.records.enumerated().sorted { ($0.element.frame.monotonicNs, $0.offset) < ($1.element.frame.monotonicNs, $1.offset) }.map(\.element)
        let frames = records.map(\.frame)
        let cut = cutAtNs.map { (ns: $0, reason: cutReason) }
        var (run, kept, segments) = WireRun.assemble(frames: frames, faults: records.map(\.fault), link: .rawIP, cut: cut,
                                                     statistics: CaptureStatistics(relayed: frames.count),
                                                     events: events)
        run.captureNote = summaryNote
        if let pcapPath {
            try WirePcapExport.write(path: pcapPath, frames: kept, segments: segments, events: run.events, link: .rawIP,
                                     interfaceName: "fault relay \(Self.clientDevice)⇄\(Self.serverDevice)", snapLength: 65_535)
        }
        return run
    }

    /// What the relay did, for the summary line.
    var summaryNote: String {
        let records = relay.records
        let faulted = records.compactMap(\.fault)
        let cost = relay.cost
        var text = "relayed between two network namespaces (client \(Self.clientHost), server \(Self.serverHost))"
        let counts = ["dropped", "delayed", "duplicated", "injected"].compactMap { name -> String? in
            let n = faulted.filter { $0.name == name }.count
            return n == 0 ? nil : "\(n) \(name)"
        }
        text += counts.isEmpty ? ", no fault" : ", " + counts.joined(separator: ", ")
        text += "; relay cost \(TextTraceRenderer.duration(cost.meanNs)) per forwarded segment"
        return text
    }
}
