/// The outcome of a non-blocking call: would-block is normal control flow, not an error.
public enum IOResult<T: Sendable>: Sendable {
    case processed(T)
    case wouldBlock
}

extension IOResult: Equatable where T: Equatable {}
