// Interface of the clock check (issue 7). The daemon codes against this; the SNTP client, the kernel
// reading and the verdict fill it in. Until then it reports "unknown" and uses the local clock.
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
    /// One line for people, e.g. "unknown: no NTP server answered (last measured 12 minutes ago)".
    public var summary: String

    public init(state: ClockState, offsetSeconds: Double? = nil, delaySeconds: Double? = nil,
                server: String? = nil, stratum: Int? = nil, measuredAt: Int64? = nil,
                kernelSynchronized: Bool = false, kernelErrorMicros: Int64? = nil,
                remedy: String? = nil, compensation: Bool = false, summary: String) {
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
        self.summary = summary
    }
}

public struct ClockConfiguration: Sendable, Equatable {
    /// "host" or "host:port" (default port 123). Empty: no NTP queries at all.
    public var servers: [String]
    public var intervalSeconds: Double
    public var timeoutSeconds: Double
    public var samples: Int
    /// |offset| above this makes the verdict "bad" and adds a clock hint to rejections.
    public var warnThresholdSeconds: Double
    /// Verify codes against NTP-corrected time.
    public var compensation: Bool

    public init(servers: [String] = ["time1.google.com", "pool.ntp.org"], intervalSeconds: Double = 900,
                timeoutSeconds: Double = 2, samples: Int = 4, warnThresholdSeconds: Double = 10,
                compensation: Bool = true) {
        self.servers = servers
        self.intervalSeconds = intervalSeconds
        self.timeoutSeconds = timeoutSeconds
        self.samples = samples
        self.warnThresholdSeconds = warnThresholdSeconds
        self.compensation = compensation
    }
}

/// Measures the clock in the background; logins only read the last measurement, never wait.
public final class ClockMonitor: Sendable {
    public let configuration: ClockConfiguration
    let logger: Logger

    public init(configuration: ClockConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts background measurement (no-op when no servers are configured).
    public func start() {}
    public func stop() {}

    public func reading() -> ClockReading {
        ClockReading(state: .unknown, compensation: configuration.compensation,
                     summary: "unknown: clock check not measured yet")
    }

    /// Unix time in seconds used to verify codes: NTP-corrected when compensation is on and a
    /// recent good measurement exists, else the local clock.
    public func verificationTime() -> Int64 {
        Int64(Date().timeIntervalSince1970)
    }

    /// The measured offset when it exceeds the threshold (for the rejection hint and audit line).
    public func suspectOffset() -> Double? { nil }
}
