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
    /// What the diagnosis shows: the last round's agreed measurement, or the best answer of a
    /// round with too few servers to agree (one server alone). Kept when later rounds fail.
    public var measurement: ClockMeasurement?
    public var roundsCompleted: Int
    /// Why the last round produced nothing usable (no answer, or servers that disagree), nil when
    /// it succeeded (or none ran yet).
    public var lastRoundFailure: String?
    /// The last round in which any server answered: its sources, truechimers and falsetickers.
    public var lastSelection: ClockSelection?
    /// The previous round's agreed measurement, nil when that round did not agree.
    public var previousAgreed: ClockMeasurement?
    /// An agreed offset seen again in the next round: the only measurement compensation applies.
    public var confirmed: ClockMeasurement?
    /// When (boot clock) the round that confirmed it ended: its age is counted from there.
    public var confirmedAt: Double?

    public init(measurement: ClockMeasurement? = nil, roundsCompleted: Int = 0, lastRoundFailure: String? = nil,
                lastSelection: ClockSelection? = nil, previousAgreed: ClockMeasurement? = nil,
                confirmed: ClockMeasurement? = nil, confirmedAt: Double? = nil) {
        self.measurement = measurement
        self.roundsCompleted = roundsCompleted
        self.lastRoundFailure = lastRoundFailure
        self.lastSelection = lastSelection
        self.previousAgreed = previousAgreed
        self.confirmed = confirmed
        self.confirmedAt = confirmedAt ?? confirmed?.bootTime
    }
}

/// Whether verification time is corrected now, and if not, why (for people).
public enum ClockCorrection: Sendable, Equatable {
    case applied(ClockMeasurement)
    case notApplied(String)
}

public enum ClockPolicy {
    /// |offset| above a fifth of clock_warn_threshold (2 s by default) is a "warning": codes still
    /// work (a TOTP step is 30 s), but the clock is drifting and will eventually break logins.
    public static let warningFraction = 0.2

    /// Two servers agree when their offsets differ by at most this (plus half of each round trip),
    /// and so must two consecutive rounds. Honest servers agree to milliseconds; a liar inside the
    /// agreement moves time by about a second at most, which no 30 s TOTP step notices.
    public static let agreementSeconds = 1.0

    /// How fast a clock may drift between rounds and still count as the same offset: 500 ppm,
    /// the most the kernel's frequency correction allows (and ntpd's tolerance).
    public static let maximumDriftRate = 500e-6

    public static func warningThreshold(forBadThreshold bad: Double) -> Double { bad * warningFraction }

    public static func state(offsetSeconds offset: Double, badThreshold: Double) -> ClockState {
        let magnitude = abs(offset)
        if magnitude > badThreshold { return .bad }
        if magnitude > warningThreshold(forBadThreshold: badThreshold) { return .warning }
        return .ok
    }

    /// How long a measurement is shown as current and used for the rejection hint: three rounds,
    /// but at least an hour and at most a day. Diagnosis only: compensation uses
    /// compensationMaximumAge.
    public static func maximumAge(intervalSeconds: Double) -> Double {
        min(max(3 * intervalSeconds, 3600), 86_400)
    }

    /// A confirmed offset is applied for two intervals after the round that confirmed it: the
    /// next round normally renews it, but a stale value is not carried on through an outage
    /// (or while the servers disagree), and a new one has to be measured and confirmed again.
    public static func compensationMaximumAge(intervalSeconds: Double) -> Double {
        2 * intervalSeconds
    }

    /// Whether `later` repeats `earlier`'s offset: within the agreement tolerance, plus the drift
    /// a free-running clock may gather between the two (on the boot clock, which is never stepped).
    public static func consistent(_ earlier: ClockMeasurement, _ later: ClockMeasurement) -> Bool {
        let elapsed = abs(later.bootTime - earlier.bootTime)
        return abs(later.offsetSeconds - earlier.offsetSeconds) <= agreementSeconds + maximumDriftRate * elapsed
    }

    /// Folds one round, ended at `finishedAt` on the boot clock, into the observations.
    /// `failure` says why a round in which no server answered usefully gave nothing.
    public static func record(_ selection: ClockSelection, failure: @autoclosure () -> String,
                              finishedAt: Double, into o: inout ClockObservations) {
        o.roundsCompleted += 1
        guard !selection.sources.isEmpty else {
            o.lastRoundFailure = failure()
            o.previousAgreed = nil
            return
        }
        o.lastSelection = selection
        if let agreed = selection.agreed {
            o.measurement = agreed
            o.lastRoundFailure = nil
            if let previous = o.previousAgreed, consistent(previous, agreed) {
                o.confirmed = agreed
                o.confirmedAt = finishedAt
            }
            o.previousAgreed = agreed
            return
        }
        // Not enough agreement to act on. A lone server, or a majority smaller than
        // clock_min_sources, is still worth a diagnosis; servers that disagree are not.
        o.previousAgreed = nil
        let diagnosable = selection.sources.count == 1 ? selection.sources : selection.truechimers
        if let best = diagnosable.min(by: { $0.delaySeconds < $1.delaySeconds }) {
            o.measurement = best
            o.lastRoundFailure = nil
        } else {
            o.lastRoundFailure = "the NTP servers disagree ("
                + selection.sources.map { "\($0.server): \(offsetText($0.offsetSeconds))" }.joined(separator: "; ") + ")"
        }
    }

    /// The one place that decides whether codes are verified against corrected time.
    public static func correction(_ o: ClockObservations, configuration: ClockConfiguration,
                                  kernel: KernelClockStatus, bootTime now: Double) -> ClockCorrection {
        guard configuration.compensation else { return .notApplied("clock_compensation is off") }
        // chrony or timesyncd own the time then; they may use authenticated NTS, and we cannot.
        guard !kernel.synchronized else {
            return .notApplied("the kernel reports that an NTP daemon keeps this clock synchronised")
        }
        guard let confirmed = o.confirmed, let confirmedAt = o.confirmedAt else {
            return .notApplied(whyNotConfirmed(o, configuration))
        }
        let age = now - confirmedAt
        let limit = compensationMaximumAge(intervalSeconds: configuration.intervalSeconds)
        guard age >= -1, age <= limit else {
            return .notApplied("the last agreed offset is \(ageText(age)) old, more than twice ntp_interval")
        }
        guard abs(confirmed.offsetSeconds) <= configuration.compensationMaxSeconds else {
            return .notApplied("the offset is beyond clock_compensation_max (\(formatSeconds(configuration.compensationMaxSeconds)))")
        }
        return .applied(confirmed)
    }

    static func whyNotConfirmed(_ o: ClockObservations, _ configuration: ClockConfiguration) -> String {
        if o.previousAgreed != nil { return "the offset is not yet confirmed by a second round" }
        guard let selection = o.lastSelection else { return "no NTP servers agree yet" }
        let needed = "correction needs \(configuration.minimumSources) servers that agree (clock_min_sources)"
        if selection.sources.count == 1 { return "only one NTP server answered; \(needed)" }
        if selection.truechimers.isEmpty { return "the NTP servers disagree; \(needed)" }
        return "only \(selection.truechimers.count) NTP servers agree; \(needed)"
    }

    public static func verificationTime(_ observations: ClockObservations, configuration: ClockConfiguration,
                                        kernel: KernelClockStatus, bootTime: Double, localTime: Double) -> Int64 {
        if case .applied(let m) = correction(observations, configuration: configuration, kernel: kernel, bootTime: bootTime) {
            return Int64(m.trueTime(atBootTime: bootTime).rounded(.down))
        }
        return Int64(localTime.rounded(.down))
    }

    /// The diagnosed offset when it exceeds the threshold and is recent (the rejection hint and
    /// the audit line's clock_offset). Never used to move verification time.
    public static func suspectOffset(_ observations: ClockObservations, configuration: ClockConfiguration,
                                     bootTime now: Double) -> Double? {
        guard let m = observations.measurement else { return nil }
        let age = now - m.bootTime
        guard age >= -1, age <= maximumAge(intervalSeconds: configuration.intervalSeconds),
              abs(m.offsetSeconds) > configuration.warnThresholdSeconds else { return nil }
        return m.offsetSeconds
    }

    static let stepRemedy = "Synchronise the clock: chronyc makestep (chrony), or ntpdate time1.google.com, "
        + "then enable an NTP service such as chrony or systemd-timesyncd (timedatectl set-ntp true)."
    static let disciplineRemedy = "No NTP daemon is disciplining this clock: enable an NTP service such as "
        + "chrony or systemd-timesyncd (timedatectl set-ntp true)."
    static func sourcesRemedy(_ configuration: ClockConfiguration) -> String {
        "To have codes checked against the corrected time meanwhile, list at least \(configuration.minimumSources) "
            + "independent servers in ntp_servers (clock_min_sources)."
    }

    public static func reading(_ observations: ClockObservations, configuration: ClockConfiguration,
                               kernel: KernelClockStatus, bootTime now: Double) -> ClockReading {
        let m = observations.measurement
        let correction = correction(observations, configuration: configuration, kernel: kernel, bootTime: now)
        var reading = ClockReading(
            state: .unknown, offsetSeconds: m?.offsetSeconds, delaySeconds: m?.delaySeconds, server: m?.server,
            stratum: m?.stratum, measuredAt: m.map { Int64($0.localTime.rounded(.down)) },
            kernelSynchronized: kernel.synchronized, kernelErrorMicros: kernel.estimatedErrorMicros,
            compensation: configuration.compensation, summary: "")
        if case .applied(let applied) = correction { reading.correctionSeconds = applied.offsetSeconds }
        reading.falsetickers = observations.lastSelection?.falsetickers.map(\.server) ?? []
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
            if case .applied = correction { headline += "; codes are still checked against the corrected time" }
            remedies.append("Check that the NTP servers (\(configuration.servers.map(\.description).joined(separator: " "))) "
                            + "answer on UDP port 123, or set ntp_servers.")
        } else if let m {
            reading.state = state(offsetSeconds: m.offsetSeconds, badThreshold: configuration.warnThresholdSeconds)
            headline = "\(reading.state.rawValue): \(offsetText(m.offsetSeconds)) (server \(m.server), stratum \(m.stratum), "
                + "delay \(millisText(m.delaySeconds)), measured \(ageText(now - m.bootTime)) ago)"
            if reading.state != .ok {
                remedies.append(stepRemedy)
                switch correction {
                case .applied:
                    headline += "; codes are checked against the corrected time"
                case .notApplied(let why):
                    headline += "; \(why): codes are checked against this clock"
                    if configuration.compensation, !kernel.synchronized, observations.confirmed == nil,
                       observations.previousAgreed == nil {
                        remedies.append(sourcesRemedy(configuration))
                    }
                }
            }
        } else {
            headline = "unknown: not measured yet"
        }
        if let falsetickers = observations.lastSelection?.falsetickers, !falsetickers.isEmpty {
            headline += "; falsetickers (ignored): "
                + falsetickers.map { "\($0.server) (\(offsetText($0.offsetSeconds)))" }.joined(separator: ", ")
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
