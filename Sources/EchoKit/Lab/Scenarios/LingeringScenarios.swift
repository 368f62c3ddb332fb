import Glibc
import SocketKit
import TCPTrace

/// `close-wait-leak`: the server never calls close() after the client's FIN.
public struct CloseWaitLeakScenario: LabScenario {
    public init() {}
    public let name = "close-wait-leak"
    public let summary = "the server forgets to close: stuck in CLOSE_WAIT (warned), the client waits in FIN_WAIT_2"
    /// How long the lab lets the leak stand before it checks both sides.
    static let holdSeconds = 1.5
    public var tracks: [ScenarioTrack] {
        [
            ScenarioTrack(.client, 1, "closed properly", [.synSent, .established, .finWait1, .finWait2]),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "never closes", [.synReceived, .established, .closeWait]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.server, 1, .closeWait), KeyState(.client, 1, .finWait2)]
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        recv() returned 0 to the server (the client's FIN), but the server never called close(), so its \
        socket stays in CLOSE_WAIT for as long as the process holds the fd: the kernel never times it out. \
        The client's orphaned socket waits in FIN_WAIT_2 for the server's FIN until net.ipv4.tcp_fin_timeout \
        (\(FinTimeout.seconds.map { "\($0) s here" } ?? "60 s by default")) and is then dropped; this run stops \
        watching after \(Self.holdSeconds) s, and the lab's cleanup then resets both sockets (not shown). Many \
        CLOSE_WAIT sockets in `ss -tan` mean an application bug: a code path that sees end-of-stream or an \
        error and forgets to close the fd.
        """
    }

    public func run(_ lab: LabRun) throws {
        lab.restingStates.insert(.finWait2)
        let (_, client, server) = try lab.establish()
        try lab.echo("hello\n", client: client, server: server)
        try lab.close(client)
        let fin = lab.receive(server)
        guard fin.endOfStream else { throw ScenarioError("the server never saw the client's FIN") }
        server.info("the server \"forgets\" to call close()")
        // Stand still, sampling, until the CLOSE_WAIT warning is out and the hold is over.
        lab.watch([server], timeout: Self.holdSeconds, cause: "sampling while the server holds the fd") { false }
        lab.settle(timeout: 0.5)
        if let entry = try? client.traced.kernelEntry(using: lab.diag) {
            // tcp_fin_timeout has not ended it (60 s by default): the lab's cleanup RST will, after the
            // capture is cut; the note must not credit the timeout with it.
            let timeout = FinTimeout.seconds.map { "\($0) s" } ?? "60 s by default"
            client.info("still \(entry.state.name) after \(Self.holdSeconds) s (orphan: no fd); tcp_fin_timeout (\(timeout)) "
                                + "would drop it, but the lab stops watching first and its cleanup resets the connection")
        }
    }
}

/// net.ipv4.tcp_fin_timeout, read from /proc (nil where unreadable).
enum FinTimeout {
    static var seconds: Int? {
        guard let file = fopen("/proc/sys/net/ipv4/tcp_fin_timeout", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Int(text.trimmedWhitespace)
    }
}

/// `time-wait`: the client closes first and the lab follows its TIME_WAIT until it is gone.
public struct TimeWaitScenario: LabScenario {
    public init() {}
    public let name = "time-wait"
    public let summary = "the whole TIME_WAIT lifetime (~60 s on Linux): the timer counting down, then gone"
    /// `SOCKETKIT_LAB_TIME_WAIT_SECONDS` cuts the watch short (tests check the first seconds).
    var limitSeconds: Double? {
        guard let text = getenv("SOCKETKIT_LAB_TIME_WAIT_SECONDS") else { return nil }
        return Double(String(cString: text))
    }

    public var tracks: [ScenarioTrack] {
        let end: [TCPState] = limitSeconds == nil ? [.timeWait, .closed] : [.timeWait]
        return [
            ScenarioTrack(.client, 1, "active closer", [.synSent, .established, .finWait1, .finWait2] + end),
            ScenarioTrack(.server, 0, "listener", [.listen]),
            ScenarioTrack(.server, 1, "passive closer", [.synReceived, .established, .closeWait, .lastAck, .closed]),
        ]
    }

    public func keyStates(slowMotion: Bool) -> [KeyState] {
        [KeyState(.client, 1, .timeWait)] + (limitSeconds == nil ? [KeyState(.client, 1, .closed)] : [])
    }

    public func explanation(slowMotion: Bool) -> String {
        """
        TIME_WAIT keeps the active closer's end of the connection for a while so a late duplicate segment \
        cannot be taken for part of a new connection with the same four-tuple, and so the final ACK can be \
        resent if the peer's FIN is retransmitted. RFC 9293 says 2×MSL (4 minutes with its 2-minute MSL); \
        Linux uses a fixed 60 s (TCP_TIMEWAIT_LEN), held in a small mini-socket that only sock_diag/ss shows \
        (the fd reads CLOSED). The socket left the kernel's table a little after the timer shown above reached \
        zero: the kernel files a 60 s timer in a coarse slot of its timer wheel, so TIME_WAIT ends late, by up \
        to ~2 s at HZ=250 (512-jiffy slots) or ~4 s at HZ=1000.
        """
    }

    public func run(_ lab: LabRun) throws {
        try ClientCloseScenario().run(lab)
        guard let client = lab.timeWaitEndpoint(), lab.diag != nil
        else { throw ScenarioError("the client did not reach TIME_WAIT") }
        let limit = limitSeconds ?? 75
        let start = MonotonicClock.now()
        var nextReport = start
        while Double(MonotonicClock.now() - start) / 1e9 < limit {
            guard let entry = try client.traced.kernelEntry(using: lab.diag), entry.state == .timeWait else { break }
            if MonotonicClock.now() >= nextReport {
                client.traced.timer(entry, cause: "TIME_WAIT still in the kernel table (sock_diag idiag_expires)")
                lab.progress?("TIME_WAIT \(Double(entry.expiresMs) / 1000) s left")
                nextReport += 5_000_000_000
            }
            usleep(20_000)
        }
        // Sample sock_diag until the mini-socket is gone: that moment is the CLOSED event.
        if limitSeconds == nil {
            lab.watch([], timeout: 5, cause: "sock_diag sample at the end of TIME_WAIT") { !lab.isFollowing(client) }
            lab.progress?("TIME_WAIT socket gone after \(TextTraceRenderer.duration(MonotonicClock.now() - start)) of watching")
        }
    }
}

extension LabRun {
    /// The client's connection #1 once it sits in TIME_WAIT.
    func timeWaitEndpoint() -> LabEndpoint? {
        endpoints.first { $0.traced.side == .client && $0.traced.conn == 1 && $0.state == .timeWait }
    }
}
