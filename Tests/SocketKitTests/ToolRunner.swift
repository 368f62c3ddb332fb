import Glibc

/// Runs an external tool with a bounded wait (SIGKILL and an error naming it when it hangs).
enum ToolRunner {
    struct Output { var status: Int32; var output: String }
    struct Hung: Error, CustomStringConvertible { var description: String }

    static func find(_ name: String) -> String? {
        for directory in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
            let path = "\(directory)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    static func run(_ path: String, _ arguments: [String], timeoutSeconds: Int = 30) throws -> Output {
        let outputPath = "/tmp/wire-tool-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(outputPath) }
        var pid: pid_t = 0
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw Hung(description: "posix_spawn(\(path)): errno \(spawned)") }
        var status: Int32 = 0
        let deadline = timeoutSeconds * 100
        var waited = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            waited += 1
            if waited > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw Hung(description: "\(path) \(arguments.joined(separator: " ")) hung for \(timeoutSeconds) s; killed")
            }
            usleep(10_000)
        }
        var text = ""
        if let file = fopen(outputPath, "r") {
            defer { fclose(file) }
            var buffer = [CChar](repeating: 0, count: 4096)
            while fgets(&buffer, Int32(buffer.count), file) != nil {
                text += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        return Output(status: status, output: text)
    }
}
