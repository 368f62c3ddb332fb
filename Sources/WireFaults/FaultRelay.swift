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

/// The user-space wire between the client's veth and the server's: a thread that reads each
/// frame one namespace sends and writes it toward the other, deciding per TCP
/// segment by the rules: pass, drop, hold then release, duplicate. The lab may also inject
/// packets of its own. Every segment it handles is recorded with its fate: the relay is the
/// run's capture point. TCP itself is never simulated: both kernels do everything TCP does.
///
/// Sendable, checked: the lab's thread and the relay thread share only `shared` (under its
/// lock), the stop flag (atomic) and the thread handle (under its own lock); the rest is
/// immutable.
public final class FaultRelay: Sendable {
    struct Held {
        var packet: [UInt8]
        var decoded: DecodedTCPSegment
        var sender: TraceSide
        var readNs: UInt64
        var releaseNs: UInt64
    }

    struct Shared {
        var rules: [FaultRule]
        /// The Ethernet header of the last frame toward each side: what an injected packet wears.
        var header: [TraceSide: [UInt8]] = [:]
        var records: [RelayRecord] = []
        var held: [Held] = []
        var forwardedNs: UInt64 = 0
        var forwarded = 0
        var notTCP = 0
    }

    private let clientPort: RelayPort
    private let serverPort: RelayPort
    private let shared: Mutex<Shared>
    private let stopping = Atomic<Bool>(false)
    /// The relay thread while it runs; taken (nil) by the first `stop`.
    private let thread = Mutex<ThreadHandle?>(nil)
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at start: the pcapng's epoch times.
    private let wallOffset: Int64

    init(clientPort: RelayPort, serverPort: RelayPort, rules: [FaultRule]) throws {
        self.clientPort = clientPort
        self.serverPort = serverPort
        shared = Mutex(Shared(rules: rules))
        wallOffset = MonotonicClock.wallNow() - Int64(MonotonicClock.now())
        let handle = try ThreadHandle { [self] in loop() }
        thread.locked { $0 = handle }
    }

    /// Adds a rule while the run goes on (counts already made still hold).
    public func add(_ rule: FaultRule) { shared.locked { $0.rules.append(rule) } }

    /// Every segment handled so far, in the order it was delivered (or dropped).
    public var records: [RelayRecord] { shared.locked { $0.records } }

    /// The records from the `index`-th on, at most `limit`: the live lab's reader takes each once.
    public func records(from index: Int, limit: Int) -> [RelayRecord] {
        shared.locked { Array($0.records.dropFirst(index).prefix(limit)) }
    }

    /// Mean time from reading a frame off one veth end to writing it to the other, and how
    /// many were forwarded; frames that were not TCP (ARP, neighbour discovery) passed as is.
    public var cost: (meanNs: UInt64, forwarded: Int, notTCP: Int) {
        shared.locked { ($0.forwarded == 0 ? 0 : $0.forwardedNs / UInt64($0.forwarded), $0.forwarded, $0.notTCP) }
    }

    /// Releases every segment held by a `.hold` rule now.
    public func releaseHeld() {
        let now = MonotonicClock.now()
        shared.locked { state in
            for index in state.held.indices where state.held[index].releaseNs == .max { state.held[index].releaseNs = now }
        }
    }

    /// Writes an IPv4 packet the lab made toward `receiver` (in an Ethernet header like the
    /// last frame that went that way), recorded as injected with `why`. False when no frame has
    /// gone that way yet or the packet does not decode.
    @discardableResult
    public func inject(ipPacket packet: [UInt8], toward receiver: TraceSide, why: String) -> Bool {
        guard let header = shared.locked({ $0.header[receiver] }) else { return false }
        return inject(frame: header + packet, toward: receiver, why: why)
    }

    /// Writes a whole frame (a recorded one, replayed) toward `receiver`, recorded as injected.
    @discardableResult
    public func inject(frame: [UInt8], toward receiver: TraceSide, why: String) -> Bool {
        var frame = frame
        PacketCrafter.fixChecksums(&frame, at: Self.ipOffset)
        guard let decoded = try? PacketDecoder.decode(frame, link: .ethernet) else { return false }
        let sender: TraceSide = receiver == .server ? .client : .server
        // Stamped before the write: the relay thread may record the answer before this returns.
        let now = MonotonicClock.now()
        port(toward: receiver).write(frame)
        record(frame, decoded, sender: sender, fault: .injected(why: why), atNs: now)
        return true
    }

    /// Where the IP header starts in a frame (Ethernet II, no VLAN tag on these veths).
    public static let ipOffset = 14

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

    /// Lets segments held for a time be delivered first (at most `limit` seconds), stops the
    /// thread, and records what is still held (a hold the lab never released) as dropped: it
    /// never reached its receiver. Closes both ports.
    func stop(deliveringHeldWithin limit: Double = 3) {
        guard let thread = thread.locked({ handle in
            defer { handle = nil }
            return handle
        }) else { return }
        let deadline = MonotonicClock.now() + UInt64(limit * 1e9)
        while MonotonicClock.now() < deadline, shared.locked({ $0.held.contains { $0.releaseNs != .max } }) { usleep(1000) }
        stopping.store(true, ordering: .releasing)
        thread.join()
        let left = shared.locked { state in
            defer { state.held.removeAll() }
            return state.held
        }
        for held in left { record(held.packet, held.decoded, sender: held.sender, fault: .dropped, atNs: held.readNs) }
        clientPort.close()
        serverPort.close()
    }

    private func port(toward receiver: TraceSide) -> RelayPort { receiver == .server ? serverPort : clientPort }

    private func record(_ packet: [UInt8], _ decoded: DecodedTCPSegment, sender: TraceSide, fault: SegmentFault?, atNs ns: UInt64) {
        let frame = CapturedFrame(bytes: packet, wallNs: Int64(ns) + wallOffset, monotonicNs: ns)
        shared.locked { $0.records.append(RelayRecord(frame: frame, decoded: decoded, sender: sender, fault: fault)) }
    }

    // MARK: The relay thread

    private func loop() {
        var classifier = SegmentClassifier()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var descriptors = [pollfd(fd: clientPort.fd, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: serverPort.fd, events: Int16(POLLIN), revents: 0)]
        while !stopping.load(ordering: .acquiring) {
            // 5 ms: the bound on how late stop() is noticed; a held segment's release sets less.
            // A frame wakes poll() at once.
            let next = shared.locked { $0.held.map(\.releaseNs).min() } ?? .max
            let now = MonotonicClock.now()
            let waitMs = next <= now ? 0 : Int32(min(5, (next - now + 999_999) / 1_000_000))
            _ = poll(&descriptors, 2, waitMs)
            releaseDue()
            for (port, sender) in [(clientPort, TraceSide.client), (serverPort, TraceSide.server)] {
                while let n = port.read(into: &buffer) {
                    handle(Array(buffer[0..<n]), from: sender, classifier: &classifier)
                }
            }
        }
    }

    private func handle(_ frame: [UInt8], from sender: TraceSide, classifier: inout SegmentClassifier) {
        let start = MonotonicClock.now()
        let target = port(toward: sender == .client ? .server : .client)
        guard let decoded = try? PacketDecoder.decode(frame, link: .ethernet) else {
            // ARP and IPv6 neighbour discovery pass untouched: the two kernels resolve each
            // other's MAC addresses through the relay like through a switch.
            target.write(frame)
            shared.locked { $0.notTCP += 1 }
            return
        }
        var packet = frame
        PacketCrafter.fixChecksums(&packet, at: Self.ipOffset)
        shared.locked { $0.header[sender == .client ? .server : .client] = Array(frame.prefix(Self.ipOffset)) }
        let occurrences = classifier.count(decoded, sender: sender)
        let rule = shared.locked { state in
            state.rules.first { $0.selector.sender == sender && occurrences[$0.selector.kind] == $0.selector.occurrence }
        }
        switch rule?.action {
        case nil:
            // Stamped before the write: the write may run the receiver's TCP at once, and the
            // lab may act on what that did (accept(), a state) before the write returns.
            let at = MonotonicClock.now()
            target.write(packet)
            record(packet, decoded, sender: sender, fault: nil, atNs: at)
            let done = MonotonicClock.now()
            shared.locked { $0.forwardedNs += done - start; $0.forwarded += 1 }
        case .drop?:
            record(packet, decoded, sender: sender, fault: .dropped, atNs: start)
        case .duplicate?:
            let first = MonotonicClock.now()
            target.write(packet)
            record(packet, decoded, sender: sender, fault: nil, atNs: first)
            let copy = MonotonicClock.now()
            target.write(packet)
            record(packet, decoded, sender: sender, fault: .duplicated, atNs: copy)
        case .delay(let ns)?:
            shared.locked { $0.held.append(Held(packet: packet, decoded: decoded, sender: sender, readNs: start, releaseNs: start + ns)) }
        case .hold?:
            shared.locked { $0.held.append(Held(packet: packet, decoded: decoded, sender: sender, readNs: start, releaseNs: .max)) }
        }
    }

    /// Delivers every held segment whose time has come, stamped at delivery.
    private func releaseDue() {
        let now = MonotonicClock.now()
        let due: [Held] = shared.locked { state in
            let ready = state.held.filter { $0.releaseNs <= now }
            state.held.removeAll { $0.releaseNs <= now }
            return ready
        }
        for held in due {
            let at = MonotonicClock.now()
            port(toward: held.sender == .client ? .server : .client).write(held.packet)
            record(held.packet, held.decoded, sender: held.sender, fault: .delayed(ns: at - held.readNs), atNs: at)
        }
    }
}
