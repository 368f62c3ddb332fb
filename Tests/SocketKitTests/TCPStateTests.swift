import Testing
@testable import SocketKit
@testable import TCPTrace
@testable import EchoKit

@Suite struct TCPStateTests {
    @Test func kernelNumbers_mapToRFCNames() {
        let expected: [UInt8: String] = [
            1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECEIVED", 4: "FIN_WAIT_1", 5: "FIN_WAIT_2",
            6: "TIME_WAIT", 7: "CLOSED", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
            12: "SYN_RECEIVED",
        ]
        for (value, name) in expected { #expect(TCPState(kernel: value).name == name) }
    }

    @Test func outOfRangeKernelValue_printsUnknown() {
        #expect(TCPState(kernel: 0).name == "UNKNOWN(0)")
        #expect(TCPState(kernel: 200).name == "UNKNOWN(200)")
    }

    @Test func names_roundTrip() {
        for state in TCPState.all { #expect(TCPState(name: state.name) == state) }
        #expect(TCPState.all.count == 11)
        #expect(TCPState(name: "ESTAB") == nil)
    }

    /// The hand-written `==`: equal exactly when the names are (every pair of the eleven states
    /// and three unknown values), and equal states hash alike (Set and Dictionary rely on it).
    @Test func equality_isByCaseAndUnknownValue() {
        let states = TCPState.all + [.unknown(0), .unknown(13), .unknown(255)]
        for a in states {
            for b in states {
                #expect((a == b) == (a.name == b.name), "\(a) vs \(b)")
                if a == b { #expect(a.hashValue == b.hashValue) }
            }
        }
        #expect(Set(states + states).count == states.count)
    }

    @Test func kernelValue_isInverseOfMapping() {
        for state in TCPState.all { #expect(TCPState(kernel: state.kernelValue!) == state) }
    }
}

@Suite struct TCPStateMachineTests {
    typealias M = TCPStateMachine

    @Test func activeClose_infersFinWaitsAndTimeWait() {
        let ctx = M.Context(weClosedFirst: true)
        #expect(M.statesBetween(.established, .closed, context: ctx) == [.finWait1, .finWait2, .timeWait])
        #expect(M.statesBetween(.finWait1, .timeWait, context: ctx) == [.finWait2])
    }

    @Test func passiveClose_infersCloseWaitAndLastAck() {
        let ctx = M.Context(peerClosedFirst: true)
        #expect(M.statesBetween(.established, .closed, context: ctx) == [.closeWait, .lastAck])
        #expect(M.statesBetween(.closeWait, .closed, context: ctx) == [.lastAck])
    }

    @Test func reset_goesStraightToClosed() {
        let ctx = M.Context(reset: true)
        #expect(M.statesBetween(.established, .closed, context: ctx) == [])
        #expect(M.statesBetween(.finWait2, .closed, context: ctx) == [])
    }

    @Test func handshake_infersSynSentAndSynReceived() {
        #expect(M.statesBetween(.closed, .established, context: .init()) == [.synSent])
        #expect(M.statesBetween(.listen, .established, context: .init()) == [.synReceived])
        #expect(M.statesBetween(.listen, .closed, context: .init()) == [])
        #expect(M.statesBetween(.synSent, .closed, context: .init()) == [])
    }

    @Test func disallowedTransition_returnsNil() {
        #expect(M.statesBetween(.timeWait, .established, context: .init()) == nil)
        #expect(M.statesBetween(.closeWait, .finWait1, context: .init()) == nil)
        #expect(!M.allows(.listen, .established))
        #expect(M.allows(.finWait1, .closing))
    }
}

@Suite struct SkippedTimeWaitTests {
    @Test func skippedTimeWait_infersFinWaitsButNoTimeWait() {
        let ctx = TCPStateMachine.Context(weClosedFirst: true, timeWaitSkipped: true)
        #expect(TCPStateMachine.statesBetween(.established, .closed, context: ctx) == [.finWait1, .finWait2])
        #expect(TCPStateMachine.statesBetween(.finWait2, .closed, context: ctx) == [])
        // Without the overflow evidence the ordinary path keeps TIME_WAIT.
        let normal = TCPStateMachine.Context(weClosedFirst: true)
        #expect(TCPStateMachine.statesBetween(.finWait2, .closed, context: normal) == [.timeWait])
    }

    @Test func overflowCounter_isReadable() {
        #expect(KernelCounters.timeWaitOverflows() != nil)
        #expect((KernelCounters.maxTimeWaitBuckets() ?? -1) >= 0)
    }
}

@Suite struct AllowedTransitionsTests {
    /// RFC 9293 §3.3.2's diagram plus the Linux spellings, written out: `allows` answers from
    /// a bit table, and this is what it must encode, edge for edge.
    @Test func allowedTable_isTheRFCDiagram() {
        let expected: [TCPState: Set<TCPState>] = [
            .closed: [.listen, .synSent],
            .listen: [.synReceived, .synSent, .closed],
            .synSent: [.synReceived, .established, .closed],
            .synReceived: [.established, .finWait1, .closed, .listen],
            .established: [.finWait1, .closeWait, .closed],
            .finWait1: [.finWait2, .closing, .timeWait, .closed],
            .finWait2: [.timeWait, .closed],
            .closing: [.timeWait, .closed],
            .closeWait: [.lastAck, .closed],
            .lastAck: [.closed],
            .timeWait: [.closed],
        ]
        #expect(TCPStateMachine.allowed == expected)
        for from in TCPState.all {
            for to in TCPState.all {
                #expect(TCPStateMachine.allows(from, to) == (from == to || expected[from, default: []].contains(to)))
            }
            #expect(!TCPStateMachine.allows(from, .unknown(13)))
            #expect(!TCPStateMachine.allows(.unknown(13), from))
        }
    }
}
