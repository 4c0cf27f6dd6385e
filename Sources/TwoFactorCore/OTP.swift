// HOTP (RFC 4226) and TOTP (RFC 6238).
import CLibCrypto

public enum OTPAlgorithm: String, Sendable, CaseIterable {
    case sha1 = "SHA1", sha256 = "SHA256", sha512 = "SHA512"
}

/// Time-based (RFC 6238) or counter-based (RFC 4226) codes: what an enrollment's secret makes.
public enum OTPKind: String, Sendable, CaseIterable {
    case totp, hotp
}

public enum OTPError: Error, Equatable, CustomStringConvertible {
    case invalidDigits(Int)
    case invalidPeriod(Int)

    public var description: String {
        switch self {
        case .invalidDigits(let digits):
            return "invalid number of digits \(digits): codes have \(OTPParameters.digitRange.lowerBound) to \(OTPParameters.digitRange.upperBound) digits"
        case .invalidPeriod(let period):
            return "invalid period \(period) seconds: the period must be \(OTPParameters.periodRange.lowerBound) to \(OTPParameters.periodRange.upperBound) seconds"
        }
    }
}

public struct OTPParameters: Sendable, Equatable {
    public static let digitRange = 6...8
    public static let periodRange = 1...3600

    public var algorithm: OTPAlgorithm
    public var digits: Int
    public var period: Int

    public init(algorithm: OTPAlgorithm = .sha1, digits: Int = 6, period: Int = 30) throws(OTPError) {
        guard Self.digitRange.contains(digits) else { throw .invalidDigits(digits) }
        guard Self.periodRange.contains(period) else { throw .invalidPeriod(period) }
        self.init(validatedAlgorithm: algorithm, digits: digits, period: period)
    }

    private init(validatedAlgorithm: OTPAlgorithm, digits: Int, period: Int) {
        self.algorithm = validatedAlgorithm
        self.digits = digits
        self.period = period
    }

    /// SHA1, 6 digits, 30 seconds: what every authenticator app supports.
    public static let standard = OTPParameters(validatedAlgorithm: .sha1, digits: 6, period: 30)
}

public enum HOTP {
    /// Largest supported digit count: the truncated value has 31 bits, at most 10 decimal digits.
    static let maxDigits = 10

    /// The RFC 4226 code for `counter`, zero-padded to `digits`. `digits` outside 1...10 is clamped
    /// into that range (OTPParameters only allows 6...8).
    public static func code(secret: [UInt8], counter: UInt64, algorithm: OTPAlgorithm, digits: Int) -> String {
        let digits = clampedDigits(digits)
        let value = truncatedValue(secret: secret, counter: counter, algorithm: algorithm) % powerOfTen(digits)
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: maxDigits) { buffer in
            writeDigits(value, digits: digits, into: buffer.baseAddress!)
            return String(decoding: UnsafeBufferPointer(start: buffer.baseAddress!, count: digits), as: UTF8.self)
        }
    }

    static func clampedDigits(_ digits: Int) -> Int { min(max(digits, 1), maxDigits) }

    static func powerOfTen(_ exponent: Int) -> UInt64 {
        var result: UInt64 = 1
        for _ in 0..<exponent { result &*= 10 }
        return result
    }

    /// Writes `value` as exactly `digits` ASCII digits, most significant first.
    static func writeDigits(_ value: UInt64, digits: Int, into buffer: UnsafeMutablePointer<UInt8>) {
        var remaining = value
        var index = digits - 1
        while index >= 0 {
            buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
            remaining /= 10
            index -= 1
        }
    }

    /// The code as ASCII digits packed big-endian into a UInt64 (at most 8 digits), so a
    /// comparison is a single XOR and nothing is allocated.
    static func packedCode(secret: [UInt8], counter: UInt64, algorithm: OTPAlgorithm, digits: Int) -> UInt64 {
        var value = truncatedValue(secret: secret, counter: counter, algorithm: algorithm) % powerOfTen(digits)
        var packed: UInt64 = 0
        for position in 0..<digits {
            let digit = UInt64(UInt8(ascii: "0")) + value % 10
            packed |= digit << (8 * UInt64(position))
            value /= 10
        }
        return packed
    }

    /// Largest number of counters one `match` looks at; a bigger range is cut to it, so a bad
    /// configuration cannot make verification loop for ages.
    public static let maxSearch: UInt64 = 1001

    /// RFC 4226 section 7.2 (look-ahead): the smallest counter in `counters` whose code is `code`,
    /// or nil. Every counter of the range is computed and compared in constant time, without
    /// stopping at a match. `code` must be exactly `digits` ASCII digits.
    public static func match(code: String, secret: [UInt8], algorithm: OTPAlgorithm, digits: Int,
                             counters: ClosedRange<UInt64>) -> UInt64? {
        guard let submitted = packSubmitted(code, digits: digits) else { return nil }
        let last = counters.lowerBound &+ min(counters.upperBound - counters.lowerBound, maxSearch - 1)
        var found: UInt64? = nil
        var counter = counters.lowerBound
        while true {
            let expected = packedCode(secret: secret, counter: counter, algorithm: algorithm, digits: digits)
            if ConstantTime.equals(expected, submitted) && found == nil { found = counter }
            if counter == last { break }
            counter += 1
        }
        return found
    }

    /// The submitted code packed like packedCode; nil on a wrong length or a non-digit.
    static func packSubmitted(_ code: String, digits: Int) -> UInt64? {
        var code = code
        return code.withUTF8 { bytes -> UInt64? in
            guard bytes.count == digits, digits <= 8 else { return nil }
            var packed: UInt64 = 0
            for (position, byte) in bytes.reversed().enumerated() {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                packed |= UInt64(byte) << (8 * UInt64(position))
            }
            return packed
        }
    }

    /// RFC 4226 section 5.3: HMAC over the big-endian counter, then dynamic truncation to 31 bits.
    static func truncatedValue(secret: [UInt8], counter: UInt64, algorithm: OTPAlgorithm) -> UInt64 {
        var counterBigEndian = counter.bigEndian
        return withUnsafeBytes(of: &counterBigEndian) { message in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { digestBuffer in
                let digest = digestBuffer.baseAddress!
                let length = HMAC.compute(key: secret, message: message, algorithm: algorithm, into: digest)
                let offset = Int(digest[length - 1] & 0x0f)
                let value =
                    (UInt64(digest[offset] & 0x7f) << 24) | (UInt64(digest[offset + 1]) << 16)
                    | (UInt64(digest[offset + 2]) << 8) | UInt64(digest[offset + 3])
                // The digest is derived from the secret: don't leave it on the stack (a plain
                // loop of stores to memory about to be freed may be optimised away).
                OPENSSL_cleanse(digest, 64)
                return value
            }
        }
    }
}

public struct TOTPMatch: Sendable, Equatable {
    /// The time step whose code matched.
    public let step: Int64
    /// step - step(at: time): the drift observed for this user's clock.
    public let offset: Int64

    public init(step: Int64, offset: Int64) {
        self.step = step
        self.offset = offset
    }
}

public struct TOTP: Sendable {
    /// Largest window `match` searches each side; larger requests are reduced to it so a bad
    /// configuration cannot make verification loop for ages.
    public static let maxWindow = 100

    public let secret: [UInt8]
    public let parameters: OTPParameters

    public init(secret: [UInt8], parameters: OTPParameters) {
        self.secret = secret
        self.parameters = parameters
    }

    /// floor(unixTime / period). Negative times round down too (they never occur in practice).
    public func step(at unixTime: Int64) -> Int64 {
        let period = Int64(parameters.period)
        let quotient = unixTime / period
        return (unixTime % period != 0 && unixTime < 0) ? quotient - 1 : quotient
    }

    public func code(at unixTime: Int64) -> String {
        code(forStep: step(at: unixTime))
    }

    /// Negative steps have no meaning in RFC 6238; they are used as their bit pattern rather than trap.
    public func code(forStep step: Int64) -> String {
        HOTP.code(secret: secret, counter: UInt64(bitPattern: step), algorithm: parameters.algorithm, digits: parameters.digits)
    }

    /// The steps `match` accepts around `current`: always current-window ... current+window;
    /// a learned drift only widens that range in its own direction, never shifts it, so a stale or
    /// planted drift cannot push out the code the authenticator shows now. Both are clamped to
    /// maxWindow so a bad value cannot make verification loop for ages.
    public static func acceptedSteps(current: Int64, window: Int, driftSteps: Int64) -> ClosedRange<Int64> {
        let window = Int64(min(max(window, 0), maxWindow))
        let drift = clampedDrift(driftSteps)
        return saturatingAdd(current, -window + min(0, drift))...saturatingAdd(current, window + max(0, drift))
    }

    static func clampedDrift(_ driftSteps: Int64) -> Int64 {
        min(max(driftSteps, -Int64(maxWindow)), Int64(maxWindow))
    }

    /// Tries every step of acceptedSteps every time (no early exit), comparing in constant time.
    /// Returns the matching step closest to the expected one, step(at: time) + driftSteps (the
    /// earlier one on a tie), or nil. Negative steps are skipped. `code` must be exactly `digits`
    /// ASCII digits; anything else returns nil.
    /// Steps up to `usedThrough` (already used) count only when no later step matches: two steps
    /// can share a code, and then it is the code of the step not used yet.
    public func match(code: String, at unixTime: Int64, window: Int, driftSteps: Int64 = 0,
                      usedThrough: Int64? = nil) -> TOTPMatch? {
        let digits = parameters.digits
        guard let submitted = HOTP.packSubmitted(code, digits: digits) else { return nil }

        let current = step(at: unixTime)
        let accepted = Self.acceptedSteps(current: current, window: window, driftSteps: driftSteps)
        let center = Self.saturatingAdd(current, Self.clampedDrift(driftSteps))
        // Ranked by (used, distance): any unused step before a used one, then the closest.
        var best: (step: Int64, rank: (Int, UInt64))? = nil
        for candidate in accepted {
            if candidate < 0 { continue }
            let expected = HOTP.packedCode(
                secret: secret, counter: UInt64(candidate), algorithm: parameters.algorithm, digits: digits)
            let matched = ConstantTime.equals(expected, submitted)
            let used = usedThrough.map { candidate <= $0 } ?? false
            let rank = (used ? 1 : 0, Self.saturatingSubtract(candidate, center).magnitude)
            if matched && best.map({ rank < $0.rank }) ?? true { best = (candidate, rank) }
        }
        guard let best else { return nil }
        return TOTPMatch(step: best.step, offset: Self.saturatingSubtract(best.step, current))
    }

    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }

    static func saturatingSubtract(_ a: Int64, _ b: Int64) -> Int64 {
        let (difference, overflow) = a.subtractingReportingOverflow(b)
        return overflow ? (b < 0 ? .max : .min) : difference
    }
}
