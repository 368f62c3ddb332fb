import SocketKit
import TCPTrace
import WireFaults

/// `--drop SEL`, `--delay SEL=DURATION`, `--duplicate SEL` (each may repeat): faults on the
/// wire between the demo's or a scenario's client and server (issue 20).
public enum FaultOptions {
    public static let names = ["--drop", "--delay", "--duplicate"]
    public static let grammar = FaultSelector.grammar

    public static let specs = [
        OptionSpec("--drop", value: "SEL", help: "with --demo/--scenario: the relay drops that segment (repeatable); SEL = SENDER:WHAT[#N], e.g. server:FIN, client:last-ack"),
        OptionSpec("--delay", value: "SEL=DURATION", help: "hold that segment DURATION (300ms, 1.5s), then deliver it (repeatable)"),
        OptionSpec("--duplicate", value: "SEL", help: "deliver that segment twice (repeatable)"),
    ]

    /// The rules in command-line order. A bad value is a usage error (exit 64) whose one line
    /// shows the grammar.
    public static func parse(_ arguments: ParsedArguments) throws -> [FaultRule] {
        var rules: [FaultRule] = []
        for name in names {
            for value in arguments.valueLists[name] ?? [] {
                guard let rule = FaultRule.parse(option: name, value: value) else {
                    let form = name == "--delay" ? "SEL=DURATION (DURATION like 300ms or 1.5s, at most 60s)" : "SEL"
                    throw UsageError("\(name) '\(ByteEscaping.escape(value))': expected \(form); \(FaultSelector.grammar)")
                }
                rules.append(rule)
            }
        }
        return rules
    }

    /// The status line of a run on the fault wire.
    public static func line(_ rules: [FaultRule]) -> String {
        "Fault wire: client \(FaultWire.clientHost) and server \(FaultWire.serverHost) in network namespaces of their own, joined only by a user-space relay (veth + AF_PACKET)"
            + (rules.isEmpty ? "" : "; " + rules.map(\.description).joined(separator: ", "))
    }

    /// The `--wire` option for a run on the fault wire: real speed inside the private namespace
    /// (re-executes into it); the relay is the capture point, so `--wire off` is refused and
    /// `--pcap` writes the relay's record. Exit 69 with one line where namespaces are refused.
    public static func wire(_ arguments: ParsedArguments, rules: [FaultRule]) throws -> WireOption {
        var wire = try WireOption.parse(arguments, defaultMode: .on)
        if wire.mode == .off { throw UsageError("the fault wire is its own capture: leave out --wire off") }
        if let reason = try enterNamespace(arguments: Array(CommandLine.arguments.dropFirst())) {
            throw CommandFailure("fault wire unavailable: \(reason)", exitStatus: SysExits.unavailable)
        }
        wire.active = false
        wire.note = "on — \(line(rules))"
        return wire
    }

    /// Enters the private user+net namespace at real speed (re-executes; never returns) when
    /// not inside it yet; inside, brings lo up. The reason when it cannot.
    public static func enterNamespace(arguments: [String]) throws -> String? {
        if SlowMotion.isInsideNamespace {
            _ = SlowMotion.setUpInside()
            return FaultWire.unavailableReason(insidePrivateNamespace: true)
        }
        switch SlowMotion.planRealSpeedNamespace() {
        case .reexecute(let unshare):
            try SlowMotion.reexecute(unshare: unshare, arguments: arguments, realSpeed: true)
        case .realSpeed(let status):
            return status.note
        }
    }
}
