/// A growable buffer that is emptied and refilled many times a second and keeps its memory:
/// the router's per-sync deliveries and each kernel link's inbox. `Array.removeAll(keepingCapacity:
/// true)` went through the generic `replaceSubrange` every time, ~170 instructions a call even
/// for one element (twice a sync under connect churn, ~640 instructions a connection; callgrind).
/// Here emptying is a `deinitialize` (nothing for plain data, a release per element otherwise)
/// and a count.
///
/// Noncopyable, so its memory has one owner and is freed with it, and reading it retains nothing
/// (as a class, taking a reference to it for a hand-out retained and released it each time).
/// @unchecked Sendable: every owner keeps it behind a lock (the source's routing lock, a link's
/// inbox lock) and touches it only under that lock.
struct ReusedBuffer<Element>: ~Copyable, @unchecked Sendable {
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
        if count == capacity { reserve(1) }
        (base + count).initialize(to: element)
        count += 1
    }

    mutating func append(contentsOf elements: UnsafeBufferPointer<Element>) {
        guard let source = elements.baseAddress, elements.count > 0 else { return }
        reserve(elements.count)
        (base + count).initialize(from: source, count: elements.count)
        count += elements.count
    }

    /// `elements` before everything held (a link's changes taken too early, put back).
    mutating func prepend(contentsOf elements: UnsafeBufferPointer<Element>) {
        guard let source = elements.baseAddress, elements.count > 0 else { return }
        reserve(elements.count)
        (base + elements.count).moveInitialize(from: base, count: count)
        base.initialize(from: source, count: elements.count)
        count += elements.count
    }

    /// Moves the oldest elements, as many as `buffer` holds, into it; returns how many.
    mutating func moveFront(into buffer: UnsafeMutableBufferPointer<Element>) -> Int {
        guard let destination = buffer.baseAddress else { return 0 }
        let taken = min(count, buffer.count)
        destination.moveInitialize(from: base, count: taken)
        base.moveInitialize(from: base + taken, count: count - taken)
        count -= taken
        return taken
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
        // Element by element, moved out and dropped: for references that is a release each,
        // where `deinitialize(count:)` called the runtime's generic `swift_arrayDestroy`
        // (~450 instructions for a mailbox's few existentials; callgrind). Nothing for plain data.
        if !_isPOD(Element.self) {
            for index in 0..<count { _ = (base + index).move() }
        }
        count = 0
    }

    @inline(never)
    private mutating func reserve(_ extra: Int) {
        guard count + extra > capacity else { return }
        let grown = max(capacity * 2, count + extra)
        let next = UnsafeMutablePointer<Element>.allocate(capacity: grown)
        next.moveInitialize(from: base, count: count)
        base.deallocate()
        base = next
        capacity = grown
    }
}
