import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// The lab while it runs: every event of every try kept (tagged with its try), the states
/// printed as they are read when a terminal watches, and on Ctrl-C what was seen so far with
/// the verdict "interrupted". The final ladder (segments joined, causal order) comes at the end.
/// Sendable as checked by the compiler: the events are behind `state`'s lock, `renderer` is an
/// immutable value, and `print` is a `@Sendable` writer (the caller's `TraceStream.write`,
/// which writes under its own lock) that may run on any emitting thread.
public final class LabLiveView: TraceSink, Sendable {
    private struct State {
        var events: [TraceEvent] = []
        var attempt = 1
        var baseNs: UInt64?
        var headerShown = false
    }
    private let state = Mutex(State())
    private let print: (@Sendable (String) -> Void)?
    private let renderer: LadderRenderer
    public let startNs = MonotonicClock.now()

    /// - Parameter print: where live rows go (nil: keep only, for JSON and files).
    public init(color: Bool, width: Int?, print: (@Sendable (String) -> Void)?) {
        self.print = print
        renderer = LadderRenderer(color: color, width: width)
    }

    /// The next try begins: its events carry `attempt`, its rows start from its own zero.
    public func begin(attempt: Int) {
        state.locked { $0.attempt = attempt; $0.baseNs = nil }
        if attempt > 1 { print?("\ntry \(attempt):\n") }
    }

    public func emit(_ event: TraceEvent) {
        var event = event
        let row: String? = state.locked { s in
            event.attempt = s.attempt
            s.events.append(event)
            guard print != nil, [.state, .warning, .error, .segment].contains(event.kind) else { return nil }
            let base = s.baseNs ?? event.timestampNs
            s.baseNs = base
            var lines = renderer.rows([event], base: base)
            if !s.headerShown {
                s.headerShown = true
                lines.insert(renderer.header(), at: 0)
            }
            return lines.joined(separator: "\n") + "\n"
        }
        if let row { print?(row) }
    }

    public func flush() {}

    /// Every event so far (all tries).
    public var events: [TraceEvent] { state.locked { $0.events } }
    public var attempt: Int { state.locked { $0.attempt } }
    /// The current try's events.
    public var currentTry: [TraceEvent] { state.locked { s in s.events.filter { $0.attempt == s.attempt } } }
}
