import Foundation
import Glibc
import Testing

extension Executables {
    /// A copy of a built executable that `nobody` can run (the build directory may not be
    /// readable by nobody), in a fresh world-readable directory. `cleanup` removes it.
    ///
    /// The copy is written by `cp`, a process of its own, never by this one: the test process
    /// forks children all the time (parallel tests), and a child forked while this process
    /// held the copy open for writing keeps that descriptor until its own exec. Executing the
    /// copy meanwhile fails with ETXTBSY ("Text file busy") — CI saw exactly that, setpriv
    /// unable to run the copy. `cp`'s descriptor dies with `cp`, which nothing here forks.
    public static func copyForNobody(_ name: String, tag: String) throws -> (url: URL, cleanup: () -> Void) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("socketkit-\(tag)-\(getpid())-\(name)")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let copy = dir.appendingPathComponent(name)
        let cp = try ChildProcess("/bin/cp", [url(name).path, copy.path])
        guard cp.wait(timeout: 30) == 0 else {
            try? FileManager.default.removeItem(at: dir)
            throw CopyFailed(message: "cp \(name) to \(copy.path): \(cp.stderrText)")
        }
        chmod(dir.path, 0o755)
        chmod(copy.path, 0o755)
        return (copy, { try? FileManager.default.removeItem(at: dir) })
    }

    public struct CopyFailed: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }
}
