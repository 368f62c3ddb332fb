import Glibc
import SocketKit
import TCPTrace

/// One load connection (or, in connect mode, one slot that reconnects after each cycle).
final class LoadConnection {
    enum Phase { case connecting, running, finishing, done }

    let slot: Int
    var socket: Socket?
    var phase = Phase.connecting
    var cycle: UInt64 = 0
    /// Where this connection's bytes start in the pattern (new per connect cycle).
    var base: UInt64 = 0
    var sent: UInt64 = 0
    var received: UInt64 = 0
    /// pingpong/connect: `sent` value at the end of the current message.
    var messageEnd: UInt64 = 0
    var messageStartNs: UInt64 = 0
    var lastProgressNs: UInt64 = 0
    var wantsWrite = false
    /// stream: (end offset, send time) of recent chunks, for latency; bounded.
    var chunks: [(end: UInt64, at: UInt64)] = []
    var chunkHead = 0

    init(slot: Int) { self.slot = slot }
}

/// One thread's share of the connections, on its own epoll loop.
final class LoadWorker {
    private let config: LoadConfiguration
    private let address: SocketAddress
    private let pattern: LoadPattern
    private let connections: [LoadConnection]
    private let epoll: Epoll
    private let buffer: UnsafeMutableRawBufferPointer
    private var report: LoadReport
    private var deadline: UInt64 = 0
    private var active = 0

    init(config: LoadConfiguration, address: SocketAddress, pattern: LoadPattern, slots: [Int]) throws {
        self.config = config
        self.address = address
        self.pattern = pattern
        connections = slots.map { LoadConnection(slot: $0) }
        // Fails without memory or descriptors: exactly what a load run may meet.
        epoll = try Epoll(capacity: 512)
        buffer = .allocate(byteCount: 64 * 1024, alignment: 16)
        report = LoadReport(mode: config.mode, connections: slots.count, size: config.size, threads: 1, elapsedSeconds: 0)
    }

    deinit { buffer.deallocate() }

    func run(deadline: UInt64) -> LoadReport {
        self.deadline = deadline
        let timeoutNs = UInt64(config.timeoutSeconds * 1e9)
        let hardDeadline = deadline + timeoutNs
        for (index, connection) in connections.enumerated() { open(connection, token: index, now: MonotonicClock.now()) }
        var nextScan: UInt64 = 0
        while active > 0 {
            let now = MonotonicClock.now()
            if now >= hardDeadline { break }
            do {
                _ = try epoll.wait(timeoutMillis: 20) { token, events in
                    handle(connections[Int(token)], token: Int(token), events: EpollEvents(rawValue: events.rawValue))
                }
            } catch {
                // epoll_wait fails only on a bad descriptor or argument: nothing more can be
                // measured; the connections still owed echo bytes are reported below.
                note("\(error)")
                break
            }
            let after = MonotonicClock.now()
            if after >= nextScan {
                nextScan = after + 20_000_000
                for (index, connection) in connections.enumerated() where connection.phase != .done {
                    if after - connection.lastProgressNs > timeoutNs {
                        fail(connection, timeout: true, "no progress for \(config.timeoutSeconds) s")
                    } else if after >= deadline {
                        windDown(connection, token: index)
                    }
                }
            }
        }
        for connection in connections where connection.phase != .done {
            fail(connection, timeout: true, "still owed \(connection.sent - connection.received) echo bytes at the end")
        }
        return report
    }

    // MARK: Connection life

    private func open(_ connection: LoadConnection, token: Int, now: UInt64) {
        connection.cycle += 1
        connection.base = UInt64(connection.slot) &* 1_000_003 &+ connection.cycle &* 7_919
        connection.sent = 0
        connection.received = 0
        connection.messageEnd = 0
        connection.lastProgressNs = now
        connection.messageStartNs = now
        connection.chunks.removeAll(keepingCapacity: true)
        connection.chunkHead = 0
        connection.phase = .connecting
        active += 1
        do {
            let socket = try Socket(family: address.family, nonBlocking: true)
            connection.socket = socket
            try? socket.setOption(.noDelay, true)
            let connected = try socket.connect(to: address)
            try epoll.add(socket.fd, events: [.readable, .writable, .readHangup], token: UInt64(token))
            connection.wantsWrite = true
            if connected { established(connection, token: token, now: now) }
        } catch {
            report.connectErrors += 1
            note("\(error)")
            close(connection)
        }
    }

    private func established(_ connection: LoadConnection, token: Int, now: UInt64) {
        connection.phase = .running
        if config.mode == .stream { fillStream(connection, token: token, now: now) } else { startMessage(connection, token: token, now: now) }
    }

    private func startMessage(_ connection: LoadConnection, token: Int, now: UInt64) {
        connection.messageEnd = connection.sent + UInt64(config.size)
        // connect mode: the latency clock started before connect().
        if config.mode == .pingpong { connection.messageStartNs = now }
        sendUntil(connection, connection.messageEnd, token: token, now: now)
    }

    private func fillStream(_ connection: LoadConnection, token: Int, now: UInt64) {
        guard now < deadline else { return }
        sendUntil(connection, connection.received + UInt64(config.window), token: token, now: now)
    }

    private func sendUntil(_ connection: LoadConnection, _ target: UInt64, token: Int, now: UInt64) {
        guard let socket = connection.socket else { return }
        var blocked = false
        while connection.sent < target {
            let count = Int(min(target - connection.sent, UInt64(max(config.size, 64 * 1024))))
            let result: IOResult<Int>
            do {
                result = try pattern.withBytes(at: connection.base + connection.sent, count: count) { try socket.send($0) }
            } catch {
                fail(connection, timeout: false, "\(error)")
                return
            }
            guard case .processed(let n) = result else { blocked = true; break }
            let before = connection.sent
            connection.sent += UInt64(n)
            if config.mode == .stream { noteChunks(connection, from: before, now: now) }
        }
        setWriteInterest(connection, blocked, token: token)
    }

    /// Stream latency: remember when each `size` boundary was sent (bounded ring).
    private func noteChunks(_ connection: LoadConnection, from before: UInt64, now: UInt64) {
        let size = UInt64(config.size)
        var end = (before / size + 1) * size
        while end <= connection.sent {
            if connection.chunks.count - connection.chunkHead < 1024 { connection.chunks.append((end, now)) }
            end += size
        }
    }

    /// A failed epoll_ctl(MOD) would stall the connection unseen: it fails, counted and named.
    private func setWriteInterest(_ connection: LoadConnection, _ wanted: Bool, token: Int) {
        guard wanted != connection.wantsWrite, let socket = connection.socket else { return }
        connection.wantsWrite = wanted
        do {
            try epoll.modify(socket.fd, events: wanted ? [.readable, .readHangup, .writable] : [.readable, .readHangup],
                             token: UInt64(token))
        } catch {
            fail(connection, timeout: false, "\(error)")
        }
    }

    // MARK: Events

    private func handle(_ connection: LoadConnection, token: Int, events: EpollEvents) {
        guard let socket = connection.socket else { return }
        let now = MonotonicClock.now()
        if connection.phase == .connecting {
            guard events.contains(.writable) || events.contains(.error) || events.contains(.hangup) else { return }
            do {
                try socket.finishConnect(to: address)
            } catch {
                report.connectErrors += 1
                note("\(error)")
                close(connection)
                if config.mode == .connect && now < deadline { open(connection, token: token, now: now) }
                return
            }
            setWriteInterest(connection, false, token: token)
            guard connection.socket != nil else { return }   // epoll_ctl failed: already failed and closed
            established(connection, token: token, now: now)
            return
        }
        if events.contains(.readable) || events.contains(.readHangup) || events.contains(.hangup) || events.contains(.error) {
            receive(connection, token: token, now: now)
        }
        if connection.socket != nil && connection.phase == .running && events.contains(.writable) {
            if config.mode == .stream { fillStream(connection, token: token, now: now) }
            else { sendUntil(connection, connection.messageEnd, token: token, now: now) }
        }
    }

    private func receive(_ connection: LoadConnection, token: Int, now: UInt64) {
        for _ in 0..<8 {
            guard let socket = connection.socket else { return }
            let result: IOResult<Int>
            do { result = try socket.receive(into: buffer) } catch {
                fail(connection, timeout: false, "\(error)")
                return
            }
            guard case .processed(let n) = result else { return }
            if n == 0 { endOfStream(connection); return }
            if connection.received + UInt64(n) > connection.sent {
                report.mismatches += 1
                fail(connection, timeout: false, "received \(connection.received + UInt64(n) - connection.sent) bytes more than sent", countAsIO: false)
                return
            }
            if !pattern.matches(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), at: connection.base + connection.received) {
                report.mismatches += 1
                fail(connection, timeout: false, "echo differs within bytes \(connection.received)..<\(connection.received + UInt64(n)) of connection \(connection.slot)", countAsIO: false)
                return
            }
            connection.received += UInt64(n)
            connection.lastProgressNs = now
            if now < deadline { report.bytesVerified += UInt64(n) }
            switch config.mode {
            case .pingpong, .connect:
                if connection.phase == .running && connection.received == connection.messageEnd { messageDone(connection, token: token, now: now) }
            case .stream:
                while connection.chunkHead < connection.chunks.count, connection.chunks[connection.chunkHead].end <= connection.received {
                    if now < deadline {
                        report.operations += 1
                        report.latency.record(now - connection.chunks[connection.chunkHead].at)
                    }
                    connection.chunkHead += 1
                }
                if connection.chunkHead > 512 {
                    connection.chunks.removeFirst(connection.chunkHead)
                    connection.chunkHead = 0
                }
                if connection.phase == .running { fillStream(connection, token: token, now: now) }
            }
            if n < buffer.count { return }
        }
    }

    private func messageDone(_ connection: LoadConnection, token: Int, now: UInt64) {
        if now < deadline {
            report.operations += 1
            report.latency.record(now - connection.messageStartNs)
        }
        if config.mode == .connect {
            close(connection)
            if now < deadline { open(connection, token: token, now: now) }
            return
        }
        if now < deadline { startMessage(connection, token: token, now: now) } else { windDown(connection, token: token) }
    }

    /// After the deadline: once nothing is in flight for a message, send FIN and read to EOF.
    private func windDown(_ connection: LoadConnection, token: Int) {
        guard connection.phase == .running, let socket = connection.socket else { return }
        if config.mode != .stream && connection.received < connection.messageEnd { return }
        if config.mode == .connect { close(connection); return }
        do { try socket.shutdown(.write) } catch {
            fail(connection, timeout: false, "\(error)")
            return
        }
        connection.phase = .finishing
        setWriteInterest(connection, false, token: token)
    }

    private func endOfStream(_ connection: LoadConnection) {
        if connection.phase == .finishing && connection.received == connection.sent {
            close(connection)
            return
        }
        report.lostBytes += connection.sent - connection.received
        report.ioErrors += 1
        note("server closed connection \(connection.slot) with \(connection.sent - connection.received) echo bytes still owed")
        close(connection)
    }

    private func fail(_ connection: LoadConnection, timeout: Bool, _ message: String, countAsIO: Bool = true) {
        if timeout {
            report.timeouts += 1
            if connection.phase == .finishing && connection.received == connection.sent { report.missingEOF += 1; report.timeouts -= 1 }
        } else if countAsIO {
            report.ioErrors += 1
        }
        if connection.phase != .connecting { report.lostBytes += connection.sent - connection.received }
        note(message)
        close(connection)
    }

    private func close(_ connection: LoadConnection) {
        guard connection.phase != .done else { return }
        connection.phase = .done
        active -= 1
        if let socket = connection.socket {
            epoll.remove(socket.fd)
            try? socket.close()
            connection.socket = nil
        }
    }

    private func note(_ message: String) {
        if report.firstError == nil { report.firstError = message }
    }
}
