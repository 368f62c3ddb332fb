extension String {
    /// The string's UTF-8 bytes where they are. `withUTF8` needs a `var`, and copying a `let`
    /// into one retained and released the string's storage around every call (two runtime
    /// calls each; ~25 a connection in the trace writers, callgrind). Native strings are always
    /// contiguous; the copy stays as the fallback for one that is not (bridged or foreign).
    @inline(__always)
    func withUTF8Bytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        if let result = try utf8.withContiguousStorageIfAvailable(body) { return result }
        var copy = self
        return try copy.withUTF8(body)
    }
}
