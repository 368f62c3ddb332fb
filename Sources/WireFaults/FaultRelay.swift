import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// One segment as the relay handled it: the packet, who sent it and what was done to it.
public struct RelayRecord: Sendable {
    public var frame: CapturedFrame
    public var decoded: DecodedTCPSegment
    public var sender: TraceSide
    public var fault: SegmentFault?
}

/// The user-space wire between the client's TUN device and the server's: a thread that reads
/// each IP packet one namespace routes out and writes it into the other, deciding per TCP
/// segment by the rules: pass, drop, hold then release, duplicate. The lab may also inject
/// packets of its own. Every segment it handles is recorded with its fate: the relay is the
/// run's capture point. TCP itself is never simulated: both kernels do everything TCP does.
public final class FaultRelay: @unchecked Sendable {
    struct Held {
        var packet: [UInt8]
        var decoded: DecodedTCPSegment
        var sender: TraceSide
        var readNs: UInt64
        var releaseNs: UInt64
    }

    struct Shared {
        var rules: [FaultRule]
        var records: [RelayRecord] = []
        var held: [Held] = []
        var forwardedNs: UInt64 = 0
        var forwarded = 0
        var notTCP = 0
    }

    private let clientTun: TunDevice
    private let serverTun: TunDevice
    private let shared: Mutex<Shared>
    private let stopping = Atomic<Bool>(false)
    private var thread: ThreadHandle?
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at start: the pcapng's epoch times.
    private let wallOffset: Int64

    init(clientTun: TunDevice, serverTun: TunDevice, rules: [FaultRule]) throws {
        self.clientTun = clientTun
        self.serverTun = serverTun
        shared = Mutex(Shared(rules: rules))
        wallOffset = MonotonicClock.wallNow() - Int64(MonotonicClock.now())
        thread = try ThreadHandle { [self] in loop() }
    }

    /// Adds a rule while the run goes on (counts already made still hold).
    public func add(_ rule: FaultRule) { shared.withLock { $0.rules.append(rule) } }

    /// Every segment handled so far, in the order it was delivered (or dropped).
    public var records: [RelayRecord] { shared.withLock { $0.records } }

    /// Mean time from reading a packet off one TUN device to writing it to the other, and how
    /// many were forwarded; packets that were not TCP (IPv6 neighbour discovery...) dropped.
    public var cost: (meanNs: UInt64, forwarded: Int, notTCP: Int) {
        shared.withLock { ($0.forwarded == 0 ? 0 : $0.forwardedNs / UInt64($0.forwarded), $0.forwarded, $0.notTCP) }
    }

    /// Releases every segment held by a `.hold` rule now.
    public func releaseHeld() {
        let now = MonotonicClock.now()
        shared.withLock { state in
            for index in state.held.indices where state.held[index].releaseNs == .max { state.held[index].releaseNs = now }
        }
    }

    /// Writes a packet the lab made toward `receiver`, recorded as injected with `why`.
    public func inject(_ packet: [UInt8], toward receiver: TraceSide, why: String) {
        guard let decoded = try? PacketDecoder.decode(packet, link: .rawIP) else { return }
        let sender: TraceSide = receiver == .server ? .client : .server
        tun(toward: receiver).write(packet)
        record(packet, decoded, sender: sender, fault: .injected(why: why), atNs: MonotonicClock.now())
    }

    /// Waits (bounded) until `done` holds for the records; returns whether it did.
    @discardableResult
    public func wait(timeout: Double, until done: ([RelayRecord]) -> Bool) -> Bool {
        let deadline = MonotonicClock.now() + UInt64(timeout * 1e9)
        while MonotonicClock.now() < deadline {
            if done(records) { return true }
            usleep(1000)
        }
        return done(records)
    }

    /// Stops the thread (held segments are never delivered) and closes both devices.
    func stop() {
        guard let thread else { return }
        stopping.store(true, ordering: .releasing)
        thread.join()
        self.thread = nil
        clientTun.close()
        serverTun.close()
    }

    private func tun(toward receiver: TraceSide) -> TunDevice { receiver == .server ? serverTun : clientTun }

    private func record(_ packet: [UInt8], _ decoded: DecodedTCPSegment, sender: TraceSide, fault: SegmentFault?, atNs ns: UInt64) {
        let frame = CapturedFrame(bytes: packet, wallNs: Int64(ns) + wallOffset, monotonicNs: ns)
        shared.withLock { $0.records.append(RelayRecord(frame: frame, decoded: decoded, sender: sender, fault: fault)) }
    }

    // MARK: The relay thread

    private func loop() {
        var classifier = SegmentClassifier()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var descriptors = [pollfd(fd: clientTun.fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: serverTun.fd, events: Int16(POLLIN), revents: 0)]
        while !stopping.load(ordering: .acquiring) {
            // 5 ms: the bound on how late stop() is noticed; a held segment's release sets less.
            let next = shared.withLock { $0.held.map(\.releaseNs).min() } ?? .max
            let now = MonotonicClock.now()
            let waitMs = next <= now ? 0 : Int32(min(5, (next - now + 999_999) / 1_000_000))
            _ = poll(&descriptors, 2, waitMs)
            releaseDue()
            for (tun, sender) in [(clientTun, TraceSide.client), (serverTun, TraceSide.server)] {
                while let n = tun.read(into: &buffer) {
                    handle(Array(buffer[0..<n]), from: sender, classifier: &classifier)
                }
            }
        }
    }

    private func handle(_ packet: [UInt8], from sender: TraceSide, classifier: inout SegmentClassifier) {
        let start = MonotonicClock.now()
        guard let decoded = try? PacketDecoder.decode(packet, link: .rawIP) else {
            shared.withLock { $0.notTCP += 1 }
            return
        }
        let occurrences = classifier.count(decoded, sender: sender)
        let rule = shared.withLock { state in
            state.rules.first { $0.selector.sender == sender && occurrences[$0.selector.kind] == $0.selector.occurrence }
        }
        let target = tun(toward: sender == .client ? .server : .client)
        switch rule?.action {
        case nil:
            target.write(packet)
            let now = MonotonicClock.now()
            record(packet, decoded, sender: sender, fault: nil, atNs: now)
            shared.withLock { $0.forwardedNs += now - start; $0.forwarded += 1 }
        case .drop?:
            record(packet, decoded, sender: sender, fault: .dropped, atNs: start)
        case .duplicate?:
            target.write(packet)
            record(packet, decoded, sender: sender, fault: nil, atNs: MonotonicClock.now())
            target.write(packet)
            record(packet, decoded, sender: sender, fault: .duplicated, atNs: MonotonicClock.now())
        case .delay(let ns)?:
            shared.withLock { $0.held.append(Held(packet: packet, decoded: decoded, sender: sender, readNs: start, releaseNs: start + ns)) }
        case .hold?:
            shared.withLock { $0.held.append(Held(packet: packet, decoded: decoded, sender: sender, readNs: start, releaseNs: .max)) }
        }
    }

    /// Delivers every held segment whose time has come, stamped at delivery.
    private func releaseDue() {
        let now = MonotonicClock.now()
        let due: [Held] = shared.withLock { state in
            let ready = state.held.filter { $0.releaseNs <= now }
            state.held.removeAll { $0.releaseNs <= now }
            return ready
        }
        for held in due {
            tun(toward: held.sender == .client ? .server : .client).write(held.packet)
            let at = MonotonicClock.now()
            record(held.packet, held.decoded, sender: held.sender, fault: .delayed(ns: at - held.readNs), atNs: at)
        }
    }
}
