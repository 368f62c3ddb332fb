import SocketKit
import TCPTrace

/// One connection's expected path in a scenario: which side, which connection id, the RFC
/// 9293 states its socket must pass through (in order) on Linux.
public struct ScenarioTrack: Sendable, Equatable {
    public var side: TraceSide
    public var conn: Int
    public var label: String
    public var states: [TCPState]

    public init(_ side: TraceSide, _ conn: Int, _ label: String, _ states: [TCPState]) {
        self.side = side
        self.conn = conn
        self.label = label
        self.states = states
    }

    /// `client #1` / `server #0`: how the timeline names the connection.
    public var name: String { "\(side.rawValue) #\(conn)" }
}

/// A state the run must *observe* (tcp_info or sock_diag), not only infer, to count as shown.
public struct KeyState: Sendable, Equatable {
    public var side: TraceSide
    public var conn: Int
    public var state: TCPState

    public init(_ side: TraceSide, _ conn: Int, _ state: TCPState) {
        self.side = side
        self.conn = conn
        self.state = state
    }
}

/// A textbook TCP situation the lab reproduces on loopback: it creates both endpoints, drives
/// them step by step, and records both sides' states into `lab.collector`.
public protocol LabScenario: Sendable {
    /// The command-line name (`client-close`): part of the interface.
    var name: String { get }
    var summary: String { get }
    /// What Linux does, per connection. Connections not listed are shown but not judged.
    var tracks: [ScenarioTrack] { get }
    /// The states that must be observed for the run to count. Slow motion makes transient
    /// states last long enough to be read; at real speed only the durable ones are required.
    func keyStates(slowMotion: Bool) -> [KeyState]
    /// Runs allowed before giving up, for scenarios whose outcome depends on kernel timing.
    var maxTries: Int { get }
    /// 2–4 sentences, correct for Linux.
    func explanation(slowMotion: Bool) -> String
    func run(_ lab: LabRun) throws
}

extension LabScenario {
    public var maxTries: Int { 1 }
}

/// Why a scenario could not run at all (not a mismatch: the machine said no).
public struct ScenarioError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
