import Foundation

extension TraceEvent {
    /// Reads one line of our own JSON Lines output back (for `--merge`); nil if it is not one.
    public init?(jsonLine line: Substring) {
        guard let data = line.data(using: .utf8),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let ts = (object["ts_ns"] as? NSNumber)?.uint64Value,
              let sideName = object["side"] as? String, let side = TraceSide(rawValue: sideName),
              let kindName = object["event"] as? String, let kind = Kind(rawValue: kindName)
        else { return nil }
        self.init(timestampNs: ts, wallNs: 0, side: side,
                  pid: (object["pid"] as? NSNumber)?.int32Value ?? 0,
                  conn: (object["conn"] as? NSNumber)?.intValue ?? 0,
                  local: object["local"] as? String, peer: object["peer"] as? String,
                  cookie: (object["cookie"] as? NSNumber)?.uint64Value, kind: kind,
                  from: (object["from"] as? String).flatMap(TCPState.init(name:)),
                  to: (object["to"] as? String).flatMap(TCPState.init(name:)),
                  source: (object["source"] as? String).flatMap(ObservationSource.init(rawValue:)),
                  cause: object["cause"] as? String ?? "",
                  inStateNs: (object["in_state_ns"] as? NSNumber)?.uint64Value)
        unexpected = object["unexpected"] as? Bool ?? false
        timerMs = (object["timer_ms"] as? NSNumber)?.uint32Value
        errno = (object["errno"] as? NSNumber)?.int32Value
    }

    /// Every event of a JSON Lines file, skipping lines that are not events.
    public static func read(jsonLinesAt path: String) throws -> [TraceEvent] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return text.split(separator: "\n").compactMap { TraceEvent(jsonLine: $0) }
    }
}
