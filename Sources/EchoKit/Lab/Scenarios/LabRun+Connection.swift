import SocketKit
import TCPTrace

extension LabRun {
    /// The usual start: server #0 listens, client #1 connects, server #1 accepts; both read
    /// ESTABLISHED before this returns.
    public func establish() throws -> (listener: LabEndpoint, client: LabEndpoint, server: LabEndpoint) {
        let listener = try listener()
        let address = try listener.socket.localAddress()
        let client = try socket(.client, conn: 1)
        try startConnect(client, to: address)
        let server = try accept(listener, conn: 1, others: [client])
        try finishConnect(client, to: address, others: [server])
        wait(server, for: .established, others: [client])
        return (listener, client, server)
    }

    /// A line from the client, echoed by the server, read back by the client.
    public func echo(_ text: String, client: LabEndpoint, server: LabEndpoint) throws {
        try send(client, text)
        let got = receive(server, count: text.utf8.count, others: [client])
        guard got.bytes.count == text.utf8.count else { throw ScenarioError("the server did not receive the message") }
        try send(server, text)
        let back = receive(client, count: text.utf8.count, others: [server])
        guard back.bytes == Array(text.utf8) else { throw ScenarioError("the echo did not come back") }
    }
}
