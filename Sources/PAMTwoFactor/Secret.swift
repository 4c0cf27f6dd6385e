// Compiled by the module and by its test build (Sources/PAMTwoFactorPure).
#if hasFeature(Embedded)
import CPAMShim
#else
import Glibc
#endif

/// A heap buffer for bytes that must not outlive their use (a code, a password, a request that
/// carries them): fixed capacity, so it never reallocates and leaves copies behind, and zeroed
/// with explicit_bzero before it is freed.
struct SecretBytes: ~Copyable {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    private(set) var count = 0

    init(capacity requested: Int) {
        capacity = requested > 0 ? requested : 1
        base = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        base.initialize(repeating: 0, count: capacity)
    }

    deinit {
        explicit_bzero(base, capacity)
        base.deallocate()
    }

    /// Appends if it fits; callers size the buffer first, so false means a programming error
    /// that is reported as a failure rather than a trap.
    mutating func append(_ byte: UInt8) -> Bool {
        guard count < capacity else { return false }
        base[count] = byte
        count += 1
        return true
    }

    mutating func append(_ bytes: UnsafePointer<UInt8>, count length: Int) -> Bool {
        guard length >= 0, length <= capacity - count else { return false }
        (base + count).update(from: bytes, count: length)
        count += length
        return true
    }

    /// Lets `body` write into the whole buffer (a WireFrameWriter, which never reallocates);
    /// what it returns is the new count.
    mutating func write(_ body: (UnsafeMutableBufferPointer<UInt8>) throws(WireError) -> Int) throws(WireError) {
        count = try body(UnsafeMutableBufferPointer(start: base, count: capacity))
    }

    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }
}

/// Length of a C string, as bytes.
func cStringBytes(_ pointer: UnsafePointer<CChar>) -> UnsafeBufferPointer<UInt8> {
    // CChar and UInt8 have the same layout and may alias each other.
    UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self),
                        count: strlen(pointer))
}
