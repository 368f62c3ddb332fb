/// A growable buffer that is emptied and refilled many times a second and keeps its memory:
/// the router's per-sync deliveries. `Array.removeAll(keepingCapacity: true)` went through the
/// generic `replaceSubrange` every time, ~170 instructions a call even for one element (twice
/// a sync under connect churn, ~640 instructions a connection; callgrind). Here emptying is a
/// `deinitialize` (nothing for plain data, a release per element otherwise) and a count.
///
/// One owner: the router, itself behind the source's routing lock. Noncopyable, so the memory
/// is freed with its owner and reading it retains nothing (as a class, taking a reference to it
/// for a hand-out retained and released it each time; callgrind).
struct ReusedBuffer<Element>: ~Copyable {
    private var base: UnsafeMutablePointer<Element>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int = 16) {
        self.capacity = max(capacity, 1)
        base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func append(_ element: Element) {
        if count == capacity { grow() }
        (base + count).initialize(to: element)
        count += 1
    }

    @inline(__always)
    subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < count, "ReusedBuffer index out of range")
            return base[index]
        }
        nonmutating set {
            precondition(index >= 0 && index < count, "ReusedBuffer index out of range")
            base[index] = newValue
        }
    }

    /// `self[range]` without a copy, for `body`'s duration.
    func withElements<R>(_ range: Range<Int>, _ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "ReusedBuffer range out of bounds")
        return try body(UnsafeBufferPointer(start: base + range.lowerBound, count: range.count))
    }

    mutating func removeAll() {
        base.deinitialize(count: count)
        count = 0
    }

    @inline(never)
    private mutating func grow() {
        let grown = capacity * 2
        let next = UnsafeMutablePointer<Element>.allocate(capacity: grown)
        next.moveInitialize(from: base, count: count)
        base.deallocate()
        base = next
        capacity = grown
    }
}
