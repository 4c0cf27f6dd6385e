// The clock check (issue 7). A background thread asks the configured NTP servers every
// ntp_interval; logins only read the last result (reading(), verificationTime(), suspectOffset())
// and never wait for the network.
import Foundation
import Logging

public enum ClockState: String, Sendable {
    case ok, warning, bad, unknown
}

/// What the daemon knows about the local clock. Offsets are local time minus true time.
public struct ClockReading: Sendable, Equatable {
    public var state: ClockState
    public var offsetSeconds: Double?
    public var delaySeconds: Double?
    public var server: String?
    public var stratum: Int?
    public var measuredAt: Int64?
    public var kernelSynchronized: Bool
    public var kernelErrorMicros: Int64?
    public var remedy: String?
    public var compensation: Bool
    /// The offset verification time is corrected by now; nil when codes are checked against
    /// the local clock.
    public var correctionSeconds: Double?
    /// Servers of the last answered round outside the majority's agreement.
    public var falsetickers: [String]
    /// One line for people, e.g. "unknown: no NTP server answered (last measured 12 minutes ago)".
    public var summary: String

    public init(state: ClockState, offsetSeconds: Double? = nil, delaySeconds: Double? = nil,
                server: String? = nil, stratum: Int? = nil, measuredAt: Int64? = nil,
                kernelSynchronized: Bool = false, kernelErrorMicros: Int64? = nil,
                remedy: String? = nil, compensation: Bool = false, correctionSeconds: Double? = nil,
                falsetickers: [String] = [], summary: String) {
        self.state = state
        self.offsetSeconds = offsetSeconds
        self.delaySeconds = delaySeconds
        self.server = server
        self.stratum = stratum
        self.measuredAt = measuredAt
        self.kernelSynchronized = kernelSynchronized
        self.kernelErrorMicros = kernelErrorMicros
        self.remedy = remedy
        self.compensation = compensation
        self.correctionSeconds = correctionSeconds
        self.falsetickers = falsetickers
        self.summary = summary
    }
}

/// The clock check's settings, from DaemonConfig.clockConfiguration: the config keys in
/// ConfigKeys.swift own their ranges and defaults, and the monitor uses the values as they are.
public struct ClockConfiguration: Sendable, Equatable {
    /// Empty: no NTP queries at all.
    public var servers: [NTPServerName]
    public var intervalSeconds: Double
    public var timeoutSeconds: Double
    public var samples: Int
    /// |offset| above this makes the verdict "bad" and adds a clock hint to rejections.
    public var warnThresholdSeconds: Double
    /// Verify codes against NTP-corrected time (only under ClockPolicy.correction's rules).
    public var compensation: Bool
    /// Largest |offset| compensated. NTP is unauthenticated: should attackers ever win the
    /// agreement, this bounds how many steps they can move verification by; beyond it the local
    /// clock is used (and rejections still carry the clock hint).
    public var compensationMaxSeconds: Double
    /// How many servers must agree before an offset is applied (never fewer than 2: one server
    /// alone is only diagnosed).
    public var minimumSources: Int

    public init(servers: [NTPServerName], intervalSeconds: Double, timeoutSeconds: Double, samples: Int,
                warnThresholdSeconds: Double, compensation: Bool, compensationMaxSeconds: Double, minimumSources: Int) {
        self.servers = servers
        self.intervalSeconds = intervalSeconds
        self.timeoutSeconds = timeoutSeconds
        self.samples = samples
        self.warnThresholdSeconds = warnThresholdSeconds
        self.compensation = compensation
        self.compensationMaxSeconds = compensationMaxSeconds
        self.minimumSources = minimumSources
    }
}

/// Measures the clock in the background; logins only read the last measurement, never wait.
public final class ClockMonitor: Sendable {
    public let configuration: ClockConfiguration
    let logger: Logger
    private let shared = ClockMonitorState()
    private let kernelReader: @Sendable () -> KernelClockStatus
    /// Where falsetickers are recorded (nil in unit tests).
    private let audit: AuditLog?

    public init(configuration: ClockConfiguration, logger: Logger, audit: AuditLog?) {
        self.configuration = configuration
        self.logger = logger
        self.audit = audit
        self.kernelReader = { KernelClockStatus.read() }
    }

    /// For tests: a fixed kernel view instead of adjtimex.
    init(configuration: ClockConfiguration, logger: Logger, audit: AuditLog? = nil,
         kernelReader: @escaping @Sendable () -> KernelClockStatus) {
        self.configuration = configuration
        self.logger = logger
        self.audit = audit
        self.kernelReader = kernelReader
    }

    /// Starts background measurement (no-op when no servers are configured). Idempotent.
    public func start() {
        guard shared.markStarted() else { return }
        let kernel = kernelReader()
        shared.noteKernel(kernel, logger: logger)
        guard !configuration.servers.isEmpty else {
            logger.info("clock check: NTP queries are off (ntp_servers is empty)")
            return
        }
        let thread = Thread { [self] in self.run() }
        thread.name = "twofactor-clock"
        thread.start()
    }

    /// Stops the background thread (it finishes within ~0.1 s; does not block).
    public func stop() {
        shared.stop()
    }

    public func reading() -> ClockReading {
        ClockPolicy.reading(shared.observations, configuration: configuration, kernel: kernelReader(),
                            bootTime: SystemClock.bootSeconds())
    }

    /// Unix time in seconds used to verify codes: NTP-corrected only under
    /// ClockPolicy.correction's rules, else the local clock.
    public func verificationTime() -> Int64 {
        ClockPolicy.verificationTime(shared.observations, configuration: configuration, kernel: kernelReader(),
                                     bootTime: SystemClock.bootSeconds(), localTime: SystemClock.realtimeSeconds())
    }

    /// The measured offset when it exceeds the threshold (for the rejection hint and audit line).
    public func suspectOffset() -> Double? {
        ClockPolicy.suspectOffset(shared.observations, configuration: configuration,
                                  bootTime: SystemClock.bootSeconds())
    }

    /// Runs one measurement round now, on the calling thread (tests; the daemon never calls it).
    func measureOnce() {
        runRound()
    }

    // MARK: - the background thread

    private func run() {
        while !shared.isStopped {
            runRound()
            shared.sleep(seconds: configuration.intervalSeconds)
        }
    }

    private func runRound() {
        let samplesPerServer = configuration.samples
        // Spread a server's samples over at most half the interval, 2 s apart at most, so public
        // servers' rate limits (about one packet per 2 s) are respected.
        let spacing = min(2, configuration.intervalSeconds / Double(2 * samplesPerServer))
        let client = SNTPClient(timeout: configuration.timeoutSeconds, isCancelled: { [shared] in shared.isStopped })
        var round = NTPRound()
        var active: [(label: String, addresses: [NTPSocketAddress])] = []
        for server in configuration.servers where !shared.isDemobilized(server.description) {
            switch SNTPClient.resolve(server) {
            case .success(let found): active.append((server.description, found))
            case .failure(let error): round.record(server: server.description, error: error)
            }
        }
        // Sample the servers in turn rather than one after the other: their answers are compared
        // with each other, so they are best taken close together, and the round stays well
        // inside the interval (a confirmed offset is only applied for two intervals).
        for index in 0..<samplesPerServer where !active.isEmpty {
            if shared.isStopped { return }
            if index > 0 { shared.sleep(seconds: spacing) }
            active = active.filter { server in
                if shared.isStopped { return false }
                switch client.query(server.addresses[index % server.addresses.count], serverLabel: server.label) {
                case .success(let sample):
                    round.record(sample)
                    logger.debug("clock check: \(server.label): offset \(formatSeconds(sample.exchange.localOffsetSeconds, signed: true)), delay \(ClockPolicy.millisText(sample.exchange.delaySeconds))")
                case .failure(let error):
                    round.record(server: server.label, error: error)
                    logger.debug("clock check: \(server.label): \(error)")
                    if case .rejected(let rejection) = error, case .kissOfDeath = rejection {
                        // RFC 4330 section 8: a kiss-o'-death means stop sending, at least for now.
                        if rejection.demobilizesServer {
                            shared.demobilize(server.label)
                            logger.warning("clock check: \(server.label) refused service (\(rejection)); not asking it again")
                        }
                        return false
                    }
                }
                return true
            }
        }
        if shared.isStopped { return }
        shared.finishRound(round, configuration: configuration, kernel: kernelReader(), logger: logger, audit: audit)
    }
}

/// Results of one round over all servers.
struct NTPRound {
    private(set) var samples: [NTPSample] = []
    private(set) var failures: [(server: String, error: SNTPQueryError)] = []

    mutating func record(_ sample: NTPSample) { samples.append(sample) }
    mutating func record(server: String, error: SNTPQueryError) { failures.append((server, error)) }


    /// Why the round gave nothing: "no NTP server answered (127.0.0.1:5000: no answer within 1.000 s)".
    var failureSummary: String {
        let answered = failures.contains { if case .rejected = $0.error { return true } else { return false } }
        var perServer: [(String, String)] = []
        for failure in failures {
            let text = failure.error.description
            if let i = perServer.firstIndex(where: { $0.0 == failure.server }) {
                // A real reason beats "no answer" when a server did both.
                if case .rejected = failure.error { perServer[i].1 = text }
            } else {
                perServer.append((failure.server, text))
            }
        }
        let details = perServer.map { "\($0.0): \($0.1)" }.joined(separator: "; ")
        let headline = answered ? "no usable NTP answer" : "no NTP server answered"
        return details.isEmpty ? headline : "\(headline) (\(details))"
    }
}

/// The monitor's mutable state, behind a lock (logins read it from the connections' threads).
private final class ClockMonitorState: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ClockObservations()
    private var started = false
    private var stopped = false
    private var demobilized: Set<String> = []
    /// What was last logged, so each change is logged once rather than every round.
    private var loggedCondition: String?
    private var loggedKernelSync: Bool?
    /// Servers already recorded as falsetickers (recorded again once they rejoin and leave again).
    private var loggedFalsetickers: Set<String> = []
    private let wakeup = DispatchSemaphore(value: 0)

    var observations: ClockObservations { lock.withLock { current } }
    var isStopped: Bool { lock.withLock { stopped } }

    func markStarted() -> Bool {
        lock.withLock {
            if started || stopped { return false }
            started = true
            return true
        }
    }

    func stop() {
        let wasRunning = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if wasRunning { wakeup.signal() }
    }

    /// Sleeps on the monotonic clock (immune to clock steps); returns early on stop().
    func sleep(seconds: Double) {
        guard !isStopped, seconds > 0 else { return }
        if wakeup.wait(timeout: .now() + seconds) == .success { wakeup.signal() } // let later waits see it too
    }

    func isDemobilized(_ server: String) -> Bool { lock.withLock { demobilized.contains(server) } }
    func demobilize(_ server: String) { _ = lock.withLock { demobilized.insert(server) } }

    func noteKernel(_ kernel: KernelClockStatus, logger: Logger) {
        let changed = lock.withLock { () -> Bool in
            defer { loggedKernelSync = kernel.synchronized }
            return loggedKernelSync != kernel.synchronized
        }
        guard changed else { return }
        if kernel.synchronized {
            logger.info("clock check: kernel: \(ClockPolicy.kernelDescription(kernel))")
        } else {
            logger.warning("clock check: kernel: \(ClockPolicy.kernelDescription(kernel))")
        }
    }

    func finishRound(_ round: NTPRound, configuration: ClockConfiguration, kernel: KernelClockStatus, logger: Logger,
                     audit: AuditLog?) {
        let selection = ClockSelection.select(round.samples, minimumSources: configuration.minimumSources)
        let (observations, condition, previous, newFalsetickers) = lock.withLock {
            () -> (ClockObservations, String, String?, [ClockMeasurement]) in
            ClockPolicy.record(selection, failure: round.failureSummary, finishedAt: SystemClock.bootSeconds(),
                               into: &current)
            let condition: String
            if current.lastRoundFailure != nil {
                condition = "failed"
            } else if let m = current.measurement {
                condition = ClockPolicy.state(offsetSeconds: m.offsetSeconds,
                                              badThreshold: configuration.warnThresholdSeconds).rawValue
                    + (current.confirmed != nil ? "" : "-unconfirmed")
            } else {
                condition = "unknown"
            }
            let previous = loggedCondition
            loggedCondition = condition
            var newFalsetickers: [ClockMeasurement] = []
            if !selection.sources.isEmpty {
                newFalsetickers = selection.falsetickers.filter { !loggedFalsetickers.contains($0.server) }
                loggedFalsetickers = Set(selection.falsetickers.map(\.server))
            }
            return (current, condition, previous, newFalsetickers)
        }
        // The audit log keeps who was outvoted: a lying or broken server is worth an admin's look.
        for falseticker in newFalsetickers {
            audit?.falseticker(server: falseticker.server, offsetSeconds: falseticker.offsetSeconds,
                               agree: selection.truechimers.count, sources: selection.sources.count,
                               truechimers: selection.truechimers.map(\.server))
            logger.warning("clock check: \(falseticker.server) disagrees with the other NTP servers (\(ClockPolicy.offsetText(falseticker.offsetSeconds))); ignored as a falseticker")
        }
        noteKernel(kernel, logger: logger)
        guard condition != previous else { return }
        // Logged on the transition only: an unreachable server is a state, not an error per round.
        let summary = ClockPolicy.reading(observations, configuration: configuration, kernel: kernel,
                                          bootTime: SystemClock.bootSeconds()).summary
        if condition == "ok" {
            logger.info("clock check: \(summary)")
        } else {
            logger.warning("clock check: \(summary)")
        }
    }
}
