// NTP timestamps (RFC 5905 section 6): 32 bits of seconds since 1900-01-01 and 32 bits of fraction.
// The seconds wrap every 2^32 s ("eras"; era 1 starts 2036-02-07), so a timestamp alone is ambiguous:
// differences are taken modulo 2^64 (valid while the two times are within 68 years of each other)
// and absolute times are resolved to the era nearest a reference time.
import Glibc

public struct NTPTimestamp: Sendable, Hashable, CustomStringConvertible {
    /// Seconds in the high 32 bits, fraction (units of 2^-32 s) in the low 32 bits.
    public var raw: UInt64

    /// 1970-01-01 minus 1900-01-01 in seconds (70 years including 17 leap days).
    public static let unixEpochInNTPSeconds: Int64 = 2_208_988_800
    static let fractionScale = 4_294_967_296.0 // 2^32

    public static let zero = NTPTimestamp(raw: 0)

    public init(raw: UInt64) { self.raw = raw }

    public init(seconds: UInt32, fraction: UInt32) {
        raw = UInt64(seconds) << 32 | UInt64(fraction)
    }

    public var seconds: UInt32 { UInt32(truncatingIfNeeded: raw >> 32) }
    public var fraction: UInt32 { UInt32(truncatingIfNeeded: raw) }
    public var isZero: Bool { raw == 0 }

    /// The timestamp of a Unix time given as seconds and nanoseconds (any era).
    public init(unixSeconds: Int64, nanoseconds: Int64) {
        var seconds = unixSeconds
        var nanos = nanoseconds
        if nanos < 0 || nanos >= 1_000_000_000 { // normalise so the fraction is in [0, 1)
            seconds += nanos / 1_000_000_000
            nanos %= 1_000_000_000
            if nanos < 0 { nanos += 1_000_000_000; seconds -= 1 }
        }
        let ntpSeconds = UInt32(truncatingIfNeeded: seconds &+ Self.unixEpochInNTPSeconds)
        // nanos < 10^9 < 2^30, so nanos << 32 fits in 64 bits; the division truncates (< 1 ns error).
        let fraction = UInt32((UInt64(nanos) << 32) / 1_000_000_000)
        self.init(seconds: ntpSeconds, fraction: fraction)
    }

    /// The timestamp of a Unix time in seconds (sub-microsecond precision for present-day times).
    public init(unixTime: Double) {
        let whole = unixTime.rounded(.down)
        let nanos = Int64(((unixTime - whole) * 1e9).rounded(.down))
        self.init(unixSeconds: Int64(whole), nanoseconds: nanos)
    }

    /// `self − other` in seconds, computed modulo 2^64 so it is right across an era boundary.
    public static func - (lhs: NTPTimestamp, rhs: NTPTimestamp) -> Double {
        Double(Int64(bitPattern: lhs.raw &- rhs.raw)) / fractionScale
    }

    /// The Unix time of this timestamp in the era that puts it nearest `reference` (Unix seconds).
    public func unixTime(near reference: Double) -> Double {
        reference + (self - NTPTimestamp(unixTime: reference))
    }

    public var description: String {
        let hex = String(raw, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }
}

/// Readings of the system clocks, taken through libc so `faketime` (LD_PRELOAD) sees them too.
enum SystemClock {
    /// The wall clock (CLOCK_REALTIME): what the daemon believes the time is.
    static func realtime() -> (seconds: Int64, nanoseconds: Int64) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (Int64(ts.tv_sec), Int64(ts.tv_nsec))
    }

    static func realtimeSeconds() -> Double {
        let now = realtime()
        return Double(now.seconds) + Double(now.nanoseconds) / 1e9
    }

    /// Seconds since boot (CLOCK_BOOTTIME): never stepped, runs at the disciplined rate and keeps
    /// counting during suspend, so ages and elapsed times stay right when someone sets the clock.
    static func bootSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
