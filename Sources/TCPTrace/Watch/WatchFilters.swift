import CSocketKit
import Glibc
import SocketKit

/// The kernel-side filters TCPWatch installs, so the kernel copies out only the watched ports.
public enum WatchFilters {
    /// Every kernel state (1 ESTABLISHED … 12 NEW_SYN_RECV): request sockets show SYN_RECEIVED,
    /// TIME_WAIT mini-sockets show TIME_WAIT.
    public static let allStates: UInt32 = 0x1ffe

    /// inet_diag bytecode accepting a socket whose local or remote port is one of `ports`
    /// (empty: no bytecode, every socket). Laid out as iproute2's ss compiles
    /// `sport = :A or dport = :A or …` (misc/ss.c, ssfilter_bytecompile):
    ///
    ///     [S_EQ A][JMP][D_EQ A][JMP] … [D_EQ Z]
    ///
    /// Each test is `{code, yes 8, no 12}` plus `{0, 0, port}`: a match falls onto the JMP,
    /// whose `no` branch (JMP always takes it) skips to the end, i.e. accept; a mismatch skips
    /// the JMP onto the next test; the last mismatch jumps 4 bytes past the end: reject. The
    /// kernel's audit (inet_diag_bc_audit) follows the `yes` chain, which the JMPs' `yes` 4
    /// keeps passing through every test, so every `no` target is a valid op boundary.
    public static func portBytecode(_ ports: [UInt16]) -> [UInt8] {
        let unique = Array(Set(ports)).sorted()
        var tests: [(UInt8, UInt16)] = []
        for port in unique {
            tests.append((UInt8(INET_DIAG_BC_S_EQ), port))
            tests.append((UInt8(INET_DIAG_BC_D_EQ), port))
        }
        var out: [UInt8] = []
        for (index, (code, port)) in tests.enumerated() {
            op(&out, code: code, yes: 8, no: 12)
            op(&out, code: 0, yes: 0, no: port)               // the port, host order, in `no`
            let rest = (tests.count - index - 1) * 12 - 4     // the tests after the JMP, with their JMPs
            if index < tests.count - 1 { op(&out, code: UInt8(INET_DIAG_BC_JMP), yes: 4, no: UInt16(rest + 4)) }
        }
        return out
    }

    /// struct inet_diag_bc_op { u8 code; u8 yes; u16 no; } in host order.
    private static func op(_ out: inout [UInt8], code: UInt8, yes: UInt8, no: UInt16) {
        out.append(code)
        out.append(yes)
        withUnsafeBytes(of: no) { out.append(contentsOf: $0) }
    }

    /// Classic BPF for the destroy-notification socket: keep a message whose inet_diag_msg
    /// source or destination port is watched, drop the rest in the kernel (before it is
    /// queued, so a churn on other ports cannot overflow our queue). The datagram is the
    /// nlmsghdr (16 bytes) then inet_diag_msg: family, state, timer, retrans (1 byte each),
    /// then idiag_sport and idiag_dport in network order, which is what `ldh` loads.
    /// Empty `ports`: accept everything.
    public static func destroyFilter(ports: [UInt16]) -> [sock_filter] {
        let unique = Array(Set(ports)).sorted().prefix(100)
        let ldh: UInt16 = 0x28, jeq: UInt16 = 0x15, ret: UInt16 = 0x06
        let accept = sock_filter(code: ret, jt: 0, jf: 0, k: 0xffff_ffff), reject = sock_filter(code: ret, jt: 0, jf: 0, k: 0)
        guard !unique.isEmpty else { return [accept] }
        let sportOffset = UInt32(MemoryLayout<nlmsghdr>.size + 4)
        var program: [sock_filter] = []
        for (pass, offset) in [sportOffset, sportOffset + 2].enumerated() {
            program.append(sock_filter(code: ldh, jt: 0, jf: 0, k: offset))
            for (index, port) in unique.enumerated() {
                // Remaining instructions to `accept` (last but one): the rest of this pass, the
                // other pass if any, then the reject.
                let restOfPass = unique.count - index - 1
                let otherPass = pass == 0 ? 1 + unique.count : 0
                program.append(sock_filter(code: jeq, jt: UInt8(restOfPass + otherPass + 1), jf: 0, k: UInt32(port)))
            }
        }
        return program + [reject, accept]
    }
}
