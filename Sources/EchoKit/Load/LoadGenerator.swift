import Glibc
import SocketKit
import Synchronization
import TCPTrace

/// Drives an echo server (this one or any other) with many connections and checks every byte
/// that comes back. One epoll loop per worker thread; bounded in time (`durationSeconds` plus
/// at most `timeoutSeconds` to collect what is still owed) and in connections.
///
/// End of run, like the C reference load generator: no new message after the deadline;
/// pingpong connections wait for their in-flight echo, streams stop writing; then each
/// connection sends FIN and reads to EOF, so bytes the server lost or kept are counted.
public final class LoadGenerator: Sendable {
    public let configuration: LoadConfiguration

    public init(configuration: LoadConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
    }

    /// Runs the load and returns the merged report. Throws only when the host does not resolve.
    public func run() throws -> LoadReport {
        let config = configuration
        let address = try HostResolver.resolve(config.host, port: config.port)[0]
        let pattern = LoadPattern(maxChunk: max(config.size, config.window))
        let threads = config.effectiveThreads
        let start = MonotonicClock.now()
        let deadline = start + UInt64(config.durationSeconds * 1e9)
        let results = ResultSlots(count: threads)
        var handles: [ThreadHandle] = []
        for index in 0..<threads {
            let slots = stride(from: index, to: config.connections, by: threads).map { $0 }
            let work: @Sendable () -> Void = {
                do {
                    let worker = try LoadWorker(config: config, address: address, pattern: pattern, slots: slots)
                    results.store(index, worker.run(deadline: deadline))
                } catch {
                    // This worker's connections never start: the report says why.
                    var report = LoadReport(mode: config.mode, connections: slots.count, size: config.size,
                                            threads: 1, elapsedSeconds: 0)
                    report.connectErrors = slots.count
                    report.firstError = "\(error)"
                    results.store(index, report)
                }
            }
            if index == threads - 1 { work() } else {
                do { handles.append(try ThreadHandle(work)) } catch { work() }
            }
        }
        for handle in handles { handle.join() }
        var report = LoadReport(mode: config.mode, connections: config.connections, size: config.size,
                                threads: threads, elapsedSeconds: Double(min(MonotonicClock.now(), deadline) - start) / 1e9)
        for partial in results.all { report.merge(partial) }
        return report
    }
}

/// Where worker threads leave their reports (each writes its own slot once, read after join).
/// A lock, not per-slot writes: two threads assigning elements of one array both mutate the
/// array (TSan: a Swift access race).
private final class ResultSlots: Sendable {
    private let reports: Mutex<[LoadReport?]>
    init(count: Int) { reports = Mutex(Array(repeating: nil, count: count)) }
    func store(_ index: Int, _ report: LoadReport) { reports.locked { $0[index] = report } }
    var all: [LoadReport] { reports.locked { $0.compactMap { $0 } } }
}
