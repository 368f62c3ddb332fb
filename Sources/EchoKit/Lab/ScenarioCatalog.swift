import SocketKit
import TCPTrace

/// Every scenario the lab knows, in the order `--scenario list` prints them.
public enum ScenarioCatalog {
    public static let all: [any LabScenario] = [
        ClientCloseScenario(),
        ServerCloseScenario(),
        HalfCloseScenario(),
        SimultaneousOpenScenario(),
        SimultaneousCloseScenario(),
        CloseWaitLeakScenario(),
        ResetScenario(),
        RefusedScenario(),
        BacklogFullScenario(),
        TimeWaitScenario(),
        LostLastAckScenario(),
        LostFINScenario(),
        LostSynAckScenario(),
        OldDuplicateSynScenario(),
        OldSegmentScenario(),
    ]

    public static func named(_ name: String) -> (any LabScenario)? {
        all.first { $0.name == name }
    }

    public static var names: [String] { all.map(\.name) }
}
