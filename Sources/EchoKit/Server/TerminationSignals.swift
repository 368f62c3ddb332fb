import Dispatch
import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// SIGINT/SIGTERM delivered on a dispatch queue (never in a signal handler): the first calls
/// `onFirst` (a graceful stop), a second one exits at once with 128 + signo.
public final class TerminationSignals: @unchecked Sendable {
    private let count = Atomic<Int>(0)
    /// Written once, at startup, from the main thread.
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "SocketKit.TerminationSignals")

    public init() {}

    public func install(command: String, signals: [Int32] = [SIGINT, SIGTERM], onFirst: @escaping @Sendable (Int32) -> Void) {
        for signo in signals {
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
            source.setEventHandler { [self] in
                if count.wrappingAdd(1, ordering: .relaxed).newValue > 1 {
                    SignalSafeOutput.line("\(command): second signal, exiting now")
                    exit(128 + signo)
                }
                onFirst(signo)
            }
            source.resume()
            sources.append(source)
        }
    }

    /// How many termination signals arrived.
    public var received: Int { count.load(ordering: .relaxed) }
}

/// One unbuffered line on stderr (no stdio buffering, so nothing is lost at exit).
public enum SignalSafeOutput {
    public static func line(_ text: String) {
        let line = text + "\n"
        // A failed write to stderr has nowhere to be reported; the line is best effort.
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}
