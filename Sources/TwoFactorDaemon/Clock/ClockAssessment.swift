// Turning measurements into a verdict, a remedy and the time codes are verified against.
// Pure functions of their inputs (times are passed in), so the rules are unit-tested directly.
import Foundation

/// The best answer of the last successful round.
public struct ClockMeasurement: Sendable, Equatable {
    /// Local minus true time.
    public var offsetSeconds: Double
    public var delaySeconds: Double
    public var server: String
    public var stratum: Int
    /// Our wall clock (Unix seconds) and CLOCK_BOOTTIME when the answer arrived.
    public var localTime: Double
    public var bootTime: Double

    public init(offsetSeconds: Double, delaySeconds: Double, server: String, stratum: Int,
                localTime: Double, bootTime: Double) {
        self.offsetSeconds = offsetSeconds
        self.delaySeconds = delaySeconds
        self.server = server
        self.stratum = stratum
        self.localTime = localTime
        self.bootTime = bootTime
    }

    init(_ sample: NTPSample) {
        self.init(offsetSeconds: sample.exchange.localOffsetSeconds, delaySeconds: sample.exchange.delaySeconds,
                  server: sample.server, stratum: sample.exchange.stratum, localTime: sample.localTime,
                  bootTime: sample.bootTime)
    }

    /// True time now, carried forward from the measurement on the boot clock: the boot clock is
    /// never stepped, so this stays right even if someone sets the wall clock afterwards.
    public func trueTime(atBootTime now: Double) -> Double {
        localTime - offsetSeconds + (now - bootTime)
    }
}

/// What the monitor has seen so far.
public struct ClockObservations: Sendable, Equatable {
    /// The last good measurement (kept when later rounds fail).
    public var measurement: ClockMeasurement?
    public var roundsCompleted: Int
    /// Why the last round produced nothing, nil when it succeeded (or none ran yet).
    public var lastRoundFailure: String?

    public init(measurement: ClockMeasurement? = nil, roundsCompleted: Int = 0, lastRoundFailure: String? = nil) {
        self.measurement = measurement
        self.roundsCompleted = roundsCompleted
        self.lastRoundFailure = lastRoundFailure
    }
}

public enum ClockPolicy {
    /// |offset| above a fifth of clock_warn_threshold (2 s by default) is a "warning": codes still
    /// work (a TOTP step is 30 s), but the clock is drifting and will eventually break logins.
    public static let warningFraction = 0.2

    public static func warningThreshold(forBadThreshold bad: Double) -> Double { bad * warningFraction }

    public static func state(offsetSeconds offset: Double, badThreshold: Double) -> ClockState {
        let magnitude = abs(offset)
        if magnitude > badThreshold { return .bad }
        if magnitude > warningThreshold(forBadThreshold: badThreshold) { return .warning }
        return .ok
    }

    /// How long a measurement is trusted for compensation and the rejection hint: three rounds,
    /// but at least an hour (a free-running clock drifts well under a second an hour, so a
    /// short NTP outage changes nothing) and at most a day.
    public static func maximumAge(intervalSeconds: Double) -> Double {
        min(max(3 * intervalSeconds, 3600), 86_400)
    }

    /// The last measurement if it is recent enough to act on.
    public static func usableMeasurement(_ observations: ClockObservations, configuration: ClockConfiguration,
                                         bootTime now: Double) -> ClockMeasurement? {
        guard let m = observations.measurement else { return nil }
        let age = now - m.bootTime
        guard age >= -1, age <= maximumAge(intervalSeconds: configuration.intervalSeconds) else { return nil }
        return m
    }

    public static func verificationTime(_ observations: ClockObservations, configuration: ClockConfiguration,
                                        bootTime: Double, localTime: Double) -> Int64 {
        if configuration.compensation,
           let m = usableMeasurement(observations, configuration: configuration, bootTime: bootTime),
           abs(m.offsetSeconds) <= configuration.compensationMaxSeconds {
            return Int64(m.trueTime(atBootTime: bootTime).rounded(.down))
        }
        return Int64(localTime.rounded(.down))
    }

    public static func suspectOffset(_ observations: ClockObservations, configuration: ClockConfiguration,
                                     bootTime: Double) -> Double? {
        guard let m = usableMeasurement(observations, configuration: configuration, bootTime: bootTime),
              abs(m.offsetSeconds) > configuration.warnThresholdSeconds else { return nil }
        return m.offsetSeconds
    }

    static let stepRemedy = "Synchronise the clock: chronyc makestep (chrony), or ntpdate time1.google.com, "
        + "then enable an NTP service such as chrony or systemd-timesyncd (timedatectl set-ntp true)."
    static let disciplineRemedy = "No NTP daemon is disciplining this clock: enable an NTP service such as "
        + "chrony or systemd-timesyncd (timedatectl set-ntp true)."

    public static func reading(_ observations: ClockObservations, configuration: ClockConfiguration,
                               kernel: KernelClockStatus, bootTime now: Double) -> ClockReading {
        let m = observations.measurement
        var reading = ClockReading(
            state: .unknown, offsetSeconds: m?.offsetSeconds, delaySeconds: m?.delaySeconds, server: m?.server,
            stratum: m?.stratum, measuredAt: m.map { Int64($0.localTime.rounded(.down)) },
            kernelSynchronized: kernel.synchronized, kernelErrorMicros: kernel.estimatedErrorMicros,
            compensation: configuration.compensation, summary: "")
        let kernelNote = kernelDescription(kernel)
        var remedies: [String] = []
        var headline: String

        if configuration.servers.isEmpty {
            headline = "unknown: NTP checks are off (ntp_servers is empty)"
        } else if let failure = observations.lastRoundFailure {
            headline = "unknown: \(failure)"
            if let m {
                headline += " (last measured \(ageText(now - m.bootTime)) ago: \(offsetText(m.offsetSeconds)) by \(m.server))"
            }
            remedies.append("Check that the NTP servers (\(configuration.servers.joined(separator: " "))) "
                            + "answer on UDP port 123, or set ntp_servers.")
        } else if let m {
            reading.state = state(offsetSeconds: m.offsetSeconds, badThreshold: configuration.warnThresholdSeconds)
            headline = "\(reading.state.rawValue): \(offsetText(m.offsetSeconds)) (server \(m.server), stratum \(m.stratum), "
                + "delay \(millisText(m.delaySeconds)), measured \(ageText(now - m.bootTime)) ago)"
            if reading.state != .ok {
                remedies.append(stepRemedy)
                headline += configuration.compensation
                    ? "; codes are checked against the corrected time"
                    : "; clock_compensation is off: codes are checked against this clock"
            }
        } else {
            headline = "unknown: not measured yet"
        }
        if !kernel.synchronized, !remedies.contains(stepRemedy) { remedies.append(disciplineRemedy) }
        reading.remedy = remedies.isEmpty ? nil : remedies.joined(separator: " ")
        reading.summary = "\(headline); kernel: \(kernelNote)"
        return reading
    }

    static func kernelDescription(_ kernel: KernelClockStatus) -> String {
        guard kernel.available else { return "clock state unavailable (adjtimex failed)" }
        guard kernel.synchronized else { return "no NTP daemon is disciplining this clock" }
        if let error = kernel.estimatedErrorMicros {
            return "synchronised (estimated error \(millisText(Double(error) / 1e6)))"
        }
        return "synchronised"
    }

    /// "120.004 s ahead", "3.2 s behind", "0.001 s ahead".
    static func offsetText(_ offset: Double) -> String {
        "clock \(formatSeconds(abs(offset))) \(offset < 0 ? "behind" : "ahead")"
    }

    static func millisText(_ seconds: Double) -> String {
        let tenths = Int64((seconds * 10_000).rounded())
        return "\(tenths / 10).\(abs(tenths % 10)) ms"
    }

    static func ageText(_ seconds: Double) -> String {
        let s = max(0, Int64(seconds.rounded()))
        if s < 90 { return "\(s) s" }
        if s < 90 * 60 { return "\((s + 30) / 60) minutes" }
        return "\((s + 1800) / 3600) hours"
    }
}
