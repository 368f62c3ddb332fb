import Testing
import SocketKit
@testable import TCPTrace

@Suite struct TCPOptionsTests {
    @Test func parse_sackBlocks() {
        let options = TCPOptions.parse([1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 20, 0, 0, 0, 30][...])
        #expect(options.sackBlocks == [.init(left: 1, right: 9), .init(left: 20, right: 30)])
        #expect(options.summary == "sack {1:9}{20:30}")
    }

    @Test func parse_lengthPastEnd_isMalformedNotTrap() {
        #expect(TCPOptions.parse([2, 40, 1][...]).malformed)
        #expect(TCPOptions.parse([3][...]).malformed)
        #expect(TCPOptions.parse([8, 0][...]).malformed)
        #expect(TCPOptions.parse([2, 3, 0][...]).malformed)       // MSS must be 4 bytes
    }

    @Test func parse_unknownKinds_areListed_andEndStops() {
        let options = TCPOptions.parse([34, 2, 0, 2, 4, 0xFF, 0xD7][...])
        #expect(options.otherKinds == [34])
        #expect(options.mss == nil)
    }
}
