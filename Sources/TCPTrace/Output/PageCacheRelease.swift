import Glibc
import SocketKit

/// Lets the page cache drop a trace file's older pages, where growing the cache is what makes
/// writing the trace expensive.
///
/// A trace is written once and read from its end (`tail -f`) or after the run, yet every byte
/// written stays cached and the cache grows by every byte. On a VM whose free memory lives on
/// the host (virtio-balloon free page reporting, a lazily restored snapshot: this project's
/// machines), a new page-cache page faults into the host on its first touch, inside write(2):
/// 2.6–3.7 ns a byte measured, against 0.11–0.25 ns into pages the guest already holds
/// (scripts/bench/writecost.py). A traced server under connect churn writes ~950 bytes a
/// connection (text) or ~1,900 (JSON): 3–6 µs of its ~25 µs a connection. Pages dropped go back
/// to the guest's free lists and the next writes reuse them before they are reported to the
/// host: the JSON server's CPU a connection fell from 29.0–30.0 to 25.2–25.9 µs (to /dev/null:
/// 24.0–25.1), the text server's from 24.2–28.0 to 24.2–24.3 (connect churn on fresh memory,
/// server on CPU 0, 2026-12-05).
///
/// Only where it pays: dropping adds the kernel's writeback start and page invalidation to the
/// writer's CPU (0.4–0.8 ns a byte where new pages are cheap, measured), so the writer measures what
/// write(2) costs it (its thread's CPU time) and starts dropping once a window of `windowBytes`
/// cost at least `expensiveNsPerByte`; then it keeps dropping (the memory that made pages
/// expensive is still there). The last `keptBytes` of the file always stay cached.
/// The calls themselves run on a thread of their own (`PageDropper`): they can wait for the
/// journal or the disk. Regular files only; the writer thread's (or, without one, the writer
/// lock's).
package struct PageCacheRelease {
    /// What write(2) cost is judged over, and how often pages are dropped once dropping.
    package let windowBytes: Int
    /// The file's tail that stays cached, for a reader following it.
    package let keptBytes: Int
    /// write(2) CPU a byte from which new page-cache pages count as expensive: 0.12–0.64 ns were
    /// measured into cached or recycled pages, 2.1–3.7 ns into new ones.
    package let expensiveNsPerByte: Double

    /// Whether older pages are being dropped.
    package private(set) var dropping = false
    /// The file offset below which pages have been offered to the kernel.
    package private(set) var droppedBelow = 0
    /// Makes the calls, off the writer's thread (`PageDropper`); started when dropping starts.
    private(set) var dropper: PageDropper?
    /// No thread could be started for the dropper, or the kernel refused: nothing more is asked.
    private var givenUp = false
    private var window = 0
    private var windowCPUNs: UInt64 = 0

    package init(windowBytes: Int = 8 << 20, keptBytes: Int = 8 << 20, expensiveNsPerByte: Double = 1.0) {
        self.windowBytes = windowBytes
        self.keptBytes = keptBytes
        self.expensiveNsPerByte = expensiveNsPerByte
    }

    /// After a write(2) of `count` bytes to `fd` that cost the writing thread `cpuNs`.
    package mutating func wrote(_ count: Int, cpuNs: UInt64, to fd: Int32) {
        window += count
        windowCPUNs &+= cpuNs
        guard window >= windowBytes else { return }
        if !dropping && !givenUp { dropping = Double(windowCPUNs) / Double(window) >= expensiveNsPerByte }
        window = 0
        windowCPUNs = 0
        if dropping { dropOlderPages(of: fd) }
    }

    /// Offers the kernel the cached pages of everything but the file's last `keptBytes`.
    /// POSIX_FADV_DONTNEED starts writeback of dirty pages in the range and drops the clean
    /// ones; it never changes the file's content.
    private mutating func dropOlderPages(of fd: Int32) {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return }
        let end = Int(status.st_size) - keptBytes
        guard end > droppedBelow else { return }
        if dropper == nil { dropper = try? PageDropper(fd: fd, overlap: windowBytes) }
        guard let dropper, !dropper.refused.load(ordering: .relaxed) else {
            dropping = false
            givenUp = true
            return
        }
        dropper.drop(below: end)
        droppedBelow = end
    }

    /// Ends the dropper's thread (before the descriptor is closed).
    package mutating func stop() {
        dropper?.stop()
    }
}
