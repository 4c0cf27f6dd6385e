// The lockout rule: after max_failures wrong codes in a row an account is locked for
// lockout_seconds; each further lockout without a success in between doubles it, up to
// lockout_max_seconds. A locked account refuses every code without judging it (no oracle), and
// a success, an enrollment or `admin unlock` clears it all. SECURITY.md has the arithmetic.

/// The lockout a failure started (for the answer and the audit log).
public struct LockoutEvent: Sendable, Equatable {
    public var until: Int64
    public var failures: Int
}

extension AccountPolicy {
    /// The first lockout lasts lockoutSeconds; each further one (without a success between) doubles.
    func lockoutDuration(previousLockouts: Int) -> Int64 {
        var seconds = lockoutSeconds
        for _ in 0..<max(0, previousLockouts) {
            if seconds >= lockoutMaxSeconds { break }
            seconds *= 2
        }
        return min(seconds, lockoutMaxSeconds)
    }

    /// Counts a failure at `now`; returns the lockout it starts, if any. The caller saves the account.
    func recordFailure(_ account: inout AccountRecord, at now: Int64) -> LockoutEvent? {
        if let until = account.lockedUntil, until <= now {
            // The previous lockout is over: a fresh run of attempts (the doubling is remembered).
            account.failures = 0
            account.lockedUntil = nil
        }
        account.failures += 1
        guard account.failures >= maxFailures else { return nil }
        let until = now + lockoutDuration(previousLockouts: account.lockouts)
        account.lockedUntil = until
        account.lockouts += 1
        return LockoutEvent(until: until, failures: account.failures)
    }
}

extension AccountRecord {
    /// When the running lockout ends, or nil when the account is not locked at `now`.
    func lockedUntil(at now: Int64) -> Int64? {
        lockedUntil.flatMap { $0 > now ? $0 : nil }
    }

    /// The failures that still count at `now`: after a lockout expires the count starts over at
    /// the next attempt.
    func failuresCounting(at now: Int64) -> Int {
        lockedUntil != nil && lockedUntil(at: now) == nil ? 0 : failures
    }

    /// A success, a new enrollment or an administrator's unlock: no failures, no lockout, and the
    /// doubling starts again from lockout_seconds.
    mutating func clearLockout() {
        failures = 0
        lockouts = 0
        lockedUntil = nil
    }
}
