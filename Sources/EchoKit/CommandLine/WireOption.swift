import Glibc
import SocketKit
import TCPTrace

/// `--wire auto|on|off` and `--pcap FILE`, resolved once at start.
///
/// Unprivileged capture works only inside a user+net namespace of our own (AF_PACKET needs
/// CAP_NET_RAW in the socket's network namespace), so a run that wants the wire and cannot
/// capture here re-executes itself under `unshare -Urn` at real speed, like slow motion does;
/// where namespaces are refused it runs as before, with one line saying why.
public struct WireOption: Sendable {
    public var mode: WireMode
    public var pcapPath: String?
    /// Whether this run captures.
    public var active: Bool
    /// One line for the output: what is captured where, or why not.
    public var note: String

    public static let options = [
        OptionSpec("--wire", value: "auto|on|off", help: "capture the segments (AF_PACKET): auto (default for --demo/--scenario) falls back, on fails without"),
        OptionSpec("--pcap", value: "FILE", help: "write the captured segments as pcapng, states as packet comments (implies --wire on)"),
    ]

    /// Reads the options. `defaultMode`: `auto` for the demo and scenarios, `off` elsewhere.
    public static func parse(_ arguments: ParsedArguments, defaultMode: WireMode) throws -> WireOption {
        let pcap = arguments.string("--pcap")
        let mode: WireMode = try arguments.choice("--wire", default: pcap == nil ? defaultMode : .on)
        if pcap != nil && mode == .off { throw UsageError("--pcap needs the wire: drop --wire off") }
        return WireOption(mode: mode, pcapPath: pcap, active: false, note: "off (--wire off)")
    }

    /// Whether a namespace at real speed is needed for the capture and allowed: re-executes
    /// (never returns) when so; otherwise returns the option with `active` and `note` set.
    /// `--wire on` without any way to capture: one line, exit 77.
    /// `loopbackReady`: the caller already brought the namespace's lo up (the scenario lab).
    public func resolve(command: String, arguments: [String], loopbackReady: Bool) throws -> WireOption {
        var resolved = self
        guard mode != .off else { return resolved }
        if SlowMotion.isInsideNamespace && !loopbackReady {
            // The re-executed child: a fresh namespace's lo is down until brought up.
            let status = SlowMotion.setUpInside()
            if status.note.hasPrefix("ip") { resolved.note = "off — \(status.note)"; return resolved }
        }
        if let reason = WireTracer.probe() {
            if !SlowMotion.isInsideNamespace {
                switch SlowMotion.planRealSpeedNamespace() {
                case .reexecute(let unshare):
                    try SlowMotion.reexecute(unshare: unshare, arguments: arguments, realSpeed: true)
                case .realSpeed(let status):
                    resolved.note = "off — \(reason), and \(status.note)"
                }
            } else {
                resolved.note = "off — \(reason)"
            }
            if mode == .on { SysExits.fail(command, "--wire on: \(resolved.note)", code: SysExits.noPermission) }
            return resolved
        }
        resolved.active = true
        let place = SlowMotion.isInsideNamespace ? "inside a private user+net namespace" : "on the host (CAP_NET_RAW)"
        resolved.note = "on — AF_PACKET on lo \(place), filtered to the run's ports by classic BPF"
        return resolved
    }

    public var line: String { "Wire: \(note)" }

    /// The long-running server and client: capture on the host only (a private namespace would
    /// hide them from their peers), so without CAP_NET_RAW `--wire on` is one line and exit 77.
    /// Emits what it chose as an `info` event. nil with `--wire off`.
    public func startLive(command: String, side: TraceSide, serverPort: UInt16, sink: TraceSink,
                          local: SocketAddress?, peer: SocketAddress?) throws -> LiveWire? {
        guard mode != .off else { return nil }
        if let reason = WireTracer.probe() {
            let note = "\(reason); on the host that means root (the demo and the lab capture unprivileged inside a namespace)"
            if mode == .on { SysExits.fail(command, "--wire on: \(note)", code: SysExits.noPermission) }
            sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .info, cause: "wire off: \(note)"))
            return nil
        }
        let (interface, why) = WireInterface.carrying(local: local, peer: peer)
        let live = try LiveWire.start(interface: interface, serverPort: serverPort, sink: sink, pcapPath: pcapPath)
        var cause = "wire on: AF_PACKET on \(interface), TCP port \(serverPort); segments as they arrive (states are stamped with their segment by --merge)"
        if let why { cause += "; \(why)" }
        sink.emit(TraceEvent(timestampNs: MonotonicClock.now(), side: side, conn: 0, kind: .info, cause: cause))
        return live
    }
}
