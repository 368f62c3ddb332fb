import SocketKit
import TCPTrace

/// What the demo says about its run, worded by how it was measured: with the wire on, each
/// claim about segments is checked against the captured segments; with it off, only what the
/// program itself measured is claimed ("read after", not "arrived after").
struct DemoClaims {
    var paragraphs: [String] = []
    /// The picture's subtitle.
    var subtitle: String

    init(_ outcome: EchoDemo.Outcome) {
        guard let wire = outcome.wire else {
            subtitle = "\(outcome.bytesAfterOurFIN) bytes read after the client's shutdown(SHUT_WR) (no capture: wire off)"
            paragraphs.append("The client's last line and its FIN left together (TCP_CORK, then shutdown(SHUT_WR)); "
                + "it then read \(outcome.bytesAfterOurFIN) more bytes: a half-closed connection carries data the other way. "
                + "Without the wire this is what the program read, not what the segments showed.")
            return
        }
        guard let fin = wire.clientFIN else {
            subtitle = "no client FIN captured"
            paragraphs.append("The capture holds no FIN from the client: nothing can be said about data after it.")
            return
        }
        let together = fin.length > 0 ? "in the same segment as its last line (#\(fin.id), \(fin.length) bytes + FIN; TCP_CORK, then shutdown(SHUT_WR))"
            : "in segment #\(fin.id)"
        subtitle = "\(wire.serverBytesAfterClientFIN) echoed bytes crossed the wire after the client's FIN (#\(fin.id))"
        paragraphs.append("The client sent its FIN \(together). On the wire the server then sent \(wire.serverBytesAfterClientFIN) "
            + "bytes after that FIN, and the client read \(outcome.bytesAfterOurFIN) bytes after its shutdown(): "
            + (wire.serverBytesAfterClientFIN > 0 ? "a half-closed connection carries data the other way."
                : "none came after the FIN on the wire this time, so this run does not show a half-close carrying data."))
        if !wire.faultLines.isEmpty {
            paragraphs.append("Faults on the wire:")
            paragraphs += wire.faultLines
        }
    }
}
