// The kernel's own view of the clock (adjtimex, read only): whether an NTP daemon (chrony, ntpd,
// systemd-timesyncd) is disciplining it. Available even when no NTP server answers us.
import CTwoFactorSystem

public struct KernelClockStatus: Sendable, Equatable {
    /// False when STA_UNSYNC is set: nothing has told the kernel the clock is right.
    public var synchronized: Bool
    public var estimatedErrorMicros: Int64?
    public var maximumErrorMicros: Int64?
    /// False when adjtimex itself failed (e.g. forbidden by a seccomp filter).
    public var available: Bool

    public init(synchronized: Bool, estimatedErrorMicros: Int64? = nil, maximumErrorMicros: Int64? = nil,
                available: Bool = true) {
        self.synchronized = synchronized
        self.estimatedErrorMicros = estimatedErrorMicros
        self.maximumErrorMicros = maximumErrorMicros
        self.available = available
    }

    public static func read() -> KernelClockStatus {
        let raw = twofactor_read_kernel_clock()
        guard raw.status != -1 else { return KernelClockStatus(synchronized: false, available: false) }
        let synchronized = raw.synchronized != 0
        // The error estimates mean nothing while unsynchronised (maxerror just grows to 16 s).
        return KernelClockStatus(synchronized: synchronized,
                                 estimatedErrorMicros: synchronized ? raw.estimated_error_us : nil,
                                 maximumErrorMicros: synchronized ? raw.max_error_us : nil)
    }
}
