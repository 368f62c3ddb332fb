import Glibc
import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct SystemCallErrorTests {
    @Test func description_namesCallSubjectAndErrno() {
        let e = SystemCallError(call: "connect", errno: ECONNREFUSED, subject: "127.0.0.1:7007")
        #expect(e.description == "connect(127.0.0.1:7007): Connection refused (ECONNREFUSED)")
    }

    /// Every errno glibc knows is named (strerrorname_np), not only a hand-kept table's.
    @Test func errnoNames_comeFromGlibc() {
        #expect(Errno.name(ENOTEMPTY) == "ENOTEMPTY" && Errno.name(EAGAIN) == "EAGAIN")
        #expect(Errno.name(4_000) == "errno 4000")
    }

    @Test func realFailure_carriesCallAndErrno() throws {
        // setsockopt on a pipe: ENOTSOCK, as NIO's SystemTest checks.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let notASocket = Socket(takingOwnershipOf: fds[0], family: AF_INET)
        defer { _ = notASocket }
        do {
            try notASocket.setOption(.noDelay, true)
            Issue.record("setsockopt on a pipe succeeded")
        } catch let error as SystemCallError {
            #expect(error.call == "setsockopt")
            #expect(error.errno == ENOTSOCK)
            #expect(error.description.contains("TCP_NODELAY"))
        }
        fds[0] = -1   // owned (and closed) by the Socket now
        try notASocket.close()
    }

    @Test func syscallHelper_retriesEINTR() throws {
        var calls = 0
        let result = try syscall("test") { () -> Int32 in
            calls += 1
            if calls <= 3 { errno = EINTR; return -1 }
            return 7
        }
        #expect(result == 7)
        #expect(calls == 4)
    }

    @Test func syscallHelper_doesNotRetryWhenAsked() {
        var calls = 0
        #expect(throws: SystemCallError(call: "close", errno: EINTR)) {
            try syscall("close", retryOnInterrupt: false) { () -> Int32 in
                calls += 1
                errno = EINTR
                return -1
            }
        }
        #expect(calls == 1)
    }

    @Test func nonBlockingHelper_mapsEAGAINToWouldBlock() throws {
        let r = try nonBlockingSyscall("recv") { () -> Int in errno = EAGAIN; return -1 }
        #expect(r == .wouldBlock)
    }

    @Test func closedSocket_throwsEBADF() throws {
        let s = try Socket(family: AF_INET)
        try s.close()
        try s.close()   // second close is a no-op, never a double close
        #expect(throws: SystemCallError(call: "getsockopt", errno: EBADF)) { _ = try s.tcpInfo() }
    }
}
