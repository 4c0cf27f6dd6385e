// The account rules: verification, drift learning, enrollment and management (the lockout rule is
// in Lockout.swift). Each function runs inside one unit of work of an AccountStore and knows
// nothing of how it is stored.
import TwoFactorCore
import TwoFactorWire

public struct AccountPolicy: Sendable {
    public var parameters: OTPParameters
    public var issuer: String
    public var window: Int
    public var maxFailures: Int
    public var lockoutSeconds: Int64
    public var lockoutMaxSeconds: Int64
    public var driftLearning: Bool
    public var driftMaxSteps: Int

    public init(config: DaemonConfig) {
        parameters = config.parameters
        issuer = config.issuer
        window = config.window
        maxFailures = config.maxFailures
        lockoutSeconds = config.lockoutSeconds
        lockoutMaxSeconds = config.lockoutMaxSeconds
        driftLearning = config.driftLearning
        driftMaxSteps = config.driftMaxSteps
    }

    /// The drift to remember after a code matched at `offset` steps from now: the offset, bounded
    /// by drift_max_steps (0 when learning is off). It only widens the accepted steps (see
    /// TOTP.acceptedSteps), so a drift learned from a wrong clock cannot lock the person out.
    func learnedDrift(offset: Int64) -> Int64 {
        guard driftLearning else { return 0 }
        let bound = Int64(driftMaxSteps)
        return min(max(offset, -bound), bound)
    }
}

public struct VerifyOutcome: Sendable, Equatable {
    public var status: Status
    /// The audit line's `reason=`.
    public var reason: AuditReason
    public var method: VerificationMethod?
    public var recoveryCodesLeft: Int?
    public var lockedUntil: Int64?
    /// Set when this attempt started a lockout (for the audit log).
    public var lockoutStarted: LockoutEvent?

    init(_ status: Status, _ reason: AuditReason) {
        self.status = status
        self.reason = reason
    }
}

/// When a unit runs: `now` is the wall clock for bookkeeping, `otpTime` the (possibly NTP
/// corrected) time codes are checked against.
public struct Moment: Sendable {
    public var now: Int64
    public var otpTime: Int64
    public init(now: Int64, otpTime: Int64) {
        self.now = now
        self.otpTime = otpTime
    }
}

public struct AccountStatus: Sendable, Equatable {
    public var name: String
    public var isEnrolled: Bool
    public var pending: Bool
    public var enrolledSince: Int64?
    public var lastUsed: Int64?
    public var recoveryCodesLeft: Int
    public var failures: Int
    public var lockedUntil: Int64?
    public var driftSteps: Int64
}

public struct EnrollmentStart: Sendable, Equatable {
    public var secret: [UInt8]
    public var parameters: OTPParameters
    public var issuer: String
    public var uri: String
}

/// The outcome of a management operation: a status, the audit reason and any payload.
public struct ManagementOutcome<Value: Sendable>: Sendable {
    public var status: Status
    public var reason: AuditReason
    public var value: Value?
    public var lockoutStarted: LockoutEvent?

    static func ok(_ value: Value) -> ManagementOutcome { ManagementOutcome(status: .ok, reason: .ok, value: value) }
    static func refused(_ status: Status, _ reason: AuditReason) -> ManagementOutcome {
        ManagementOutcome(status: status, reason: reason, value: nil)
    }
}

public struct AccountRules: Sendable {
    public let policy: AccountPolicy
    let keys: DerivedKeys

    public init(policy: AccountPolicy, keys: DerivedKeys) {
        self.policy = policy
        self.keys = keys
    }

    // MARK: Verification

    public func verify(_ transaction: any AccountTransaction, user: String, code: [UInt8], at moment: Moment) throws -> VerifyOutcome {
        guard var account = try transaction.account(named: user), let enrollment = account.enrollment else {
            return VerifyOutcome(.notEnrolled, .notEnrolled)
        }
        if let until = account.lockedUntil(at: moment.now) {
            // Refused without looking at the code: a locked account is no oracle.
            var outcome = VerifyOutcome(.lockedOut, .lockedOut)
            outcome.lockedUntil = until
            return outcome
        }
        var outcome = try check(code: code, account: &account, enrollment: enrollment, transaction, moment)
        if outcome.status == .accepted, outcome.recoveryCodesLeft == nil {
            outcome.recoveryCodesLeft = try transaction.recoveryCodesLeft(of: user)
        }
        try transaction.save(account)
        return outcome
    }

    /// Checks a TOTP or recovery code and updates the account's counters; the caller saves it.
    func check(code: [UInt8], account: inout AccountRecord, enrollment: EnrollmentRecord,
               _ transaction: any AccountTransaction, _ moment: Moment) throws -> VerifyOutcome {
        var outcome: VerifyOutcome
        switch CodeInput.classify(code, digits: enrollment.digits) {
        case .invalid:
            outcome = VerifyOutcome(.wrongCode, .invalidCode)
        case .totp(let digits):
            outcome = try checkTOTP(digits, account: &account, enrollment: enrollment, moment)
        case .recovery(let normalized):
            outcome = try checkRecoveryCode(normalized, account: account, transaction, moment)
        }
        if outcome.status == .accepted {
            account.clearLockout()
            account.lastUsedAt = moment.now
            // A recovery code is what people use when the app's codes stop working; a drift
            // learned from a wrong clock may be why, so start again from none.
            if outcome.method == .recoveryCode { account.driftSteps = 0 }
        } else {
            outcome.lockoutStarted = policy.recordFailure(&account, at: moment.now)
            outcome.lockedUntil = outcome.lockoutStarted?.until
        }
        return outcome
    }

    /// Opens the sealed secret, matches `digits` and wipes the secret. The TOTP value that shares
    /// the secret's buffer lives only inside `match`, so the wipe happens in place rather than on
    /// a copy (which would leave the secret in freed memory).
    private func matchCode(_ digits: String, sealed: [UInt8], account: String, parameters: OTPParameters,
                           at time: Int64, driftSteps: Int64) throws -> TOTPMatch? {
        var secret = try keys.openSecret(sealed, account: account)
        let found = Self.match(digits, secret: secret, parameters: parameters, at: time, window: policy.window,
                               driftSteps: driftSteps)
        ConstantTime.zero(&secret)
        return found
    }

    private static func match(_ digits: String, secret: [UInt8], parameters: OTPParameters, at time: Int64,
                              window: Int, driftSteps: Int64) -> TOTPMatch? {
        TOTP(secret: secret, parameters: parameters).match(code: digits, at: time, window: window, driftSteps: driftSteps)
    }

    private func checkTOTP(_ digits: String, account: inout AccountRecord, enrollment: EnrollmentRecord,
                           _ moment: Moment) throws -> VerifyOutcome {
        let drift = policy.driftLearning ? account.driftSteps : 0
        guard let match = try matchCode(digits, sealed: enrollment.sealedSecret, account: account.name,
                                        parameters: try parameters(of: enrollment), at: moment.otpTime,
                                        driftSteps: drift) else {
            return VerifyOutcome(.wrongCode, .wrongCode)
        }
        if let last = account.lastStep, match.step <= last {
            return VerifyOutcome(.codeReused, .codeReused)
        }
        account.lastStep = match.step
        if policy.driftLearning { account.driftSteps = policy.learnedDrift(offset: match.offset) }
        var outcome = VerifyOutcome(.accepted, .ok)
        outcome.method = .totp
        return outcome
    }

    private func checkRecoveryCode(_ normalized: String, account: AccountRecord, _ transaction: any AccountTransaction,
                                   _ moment: Moment) throws -> VerifyOutcome {
        let hash = keys.hashRecoveryCode(normalized: normalized)
        // Compare against every stored hash, in constant time, without stopping at a match.
        var match: RecoveryCodeRecord?
        for record in try transaction.recoveryCodes(of: account.name) where ConstantTime.equals(record.hash, hash) {
            match = record
        }
        guard let match else { return VerifyOutcome(.wrongCode, .wrongCode) }
        guard match.usedAt == nil, try transaction.markRecoveryCodeUsed(of: account.name, hash: hash, at: moment.now) else {
            return VerifyOutcome(.codeReused, .codeReused)
        }
        var outcome = VerifyOutcome(.accepted, .ok)
        outcome.method = .recoveryCode
        outcome.recoveryCodesLeft = try transaction.recoveryCodesLeft(of: account.name)
        return outcome
    }

    func parameters(of enrollment: EnrollmentRecord) throws -> OTPParameters {
        guard let algorithm = OTPAlgorithm(rawValue: enrollment.algorithm) else {
            throw StoreError("stored algorithm '\(enrollment.algorithm)' is unknown")
        }
        return try OTPParameters(algorithm: algorithm, digits: enrollment.digits, period: enrollment.period)
    }

    // MARK: Enrollment

    public func enrollBegin(_ transaction: any AccountTransaction, user: String, issuer: String?,
                            at moment: Moment) throws -> ManagementOutcome<EnrollmentStart> {
        var account = try transaction.account(named: user) ?? AccountRecord(name: user)
        if account.enrollment != nil { return .refused(.alreadyEnrolled, .alreadyEnrolled) }
        let parameters = policy.parameters
        // RFC 4226 asks for at least 128 bits, RFC 6238 for a key as long as the hash output.
        let length = switch parameters.algorithm { case .sha1: 20; case .sha256: 32; case .sha512: 64 }
        var secret = SecureRandom.bytes(length)
        let sealed = try keys.sealSecret(secret, account: user)
        account.pending = EnrollmentRecord(sealedSecret: sealed, algorithm: parameters.algorithm.rawValue,
                                           digits: parameters.digits, period: parameters.period, createdAt: moment.now)
        try transaction.save(account)
        let shownIssuer = issuer ?? policy.issuer
        let uri = OTPAuthURI(issuer: shownIssuer, account: user, secret: secret, parameters: parameters).uriString
        defer { ConstantTime.zero(&secret) }
        return .ok(EnrollmentStart(secret: secret, parameters: parameters, issuer: shownIssuer, uri: uri))
    }

    /// Confirms with a current code from the new authenticator; answers the new recovery codes.
    public func enrollConfirm(_ transaction: any AccountTransaction, user: String, code: [UInt8],
                              at moment: Moment) throws -> ManagementOutcome<[String]> {
        guard var account = try transaction.account(named: user) else {
            return .refused(.noPendingEnrollment, .noPendingEnrollment)
        }
        if account.enrollment != nil { return .refused(.alreadyEnrolled, .alreadyEnrolled) }
        guard let pending = account.pending else { return .refused(.noPendingEnrollment, .noPendingEnrollment) }
        guard case .totp(let digits) = CodeInput.classify(code, digits: pending.digits) else {
            return .refused(.wrongCode, .invalidCode)
        }
        // A wrong code here does not count toward a lockout: nothing is protected yet.
        guard let match = try matchCode(digits, sealed: pending.sealedSecret, account: user,
                                        parameters: try parameters(of: pending), at: moment.otpTime,
                                        driftSteps: 0) else {
            return .refused(.wrongCode, .wrongCode)
        }
        var confirmed = pending
        confirmed.createdAt = moment.now
        account.enrollment = confirmed
        account.pending = nil
        account.lastStep = match.step  // the confirming code cannot also log in
        account.lastUsedAt = nil
        account.clearLockout()
        account.driftSteps = policy.learnedDrift(offset: match.offset)
        try transaction.save(account)
        return .ok(try newRecoveryCodes(transaction, user: user))
    }

    public func enrollCancel(_ transaction: any AccountTransaction, user: String) throws -> ManagementOutcome<Bool> {
        guard var account = try transaction.account(named: user), account.pending != nil else {
            return .refused(.noPendingEnrollment, .noPendingEnrollment)
        }
        account.pending = nil
        if account.enrollment == nil && account.failures == 0 && account.lockedUntil == nil {
            try transaction.deleteAccount(named: user)
        } else {
            try transaction.save(account)
        }
        return .ok(true)
    }

    private func newRecoveryCodes(_ transaction: any AccountTransaction, user: String) throws -> [String] {
        let codes = RecoveryCodes.generate()
        let hashes = codes.map { code in keys.hashRecoveryCode(normalized: RecoveryCodes.normalize(code) ?? code) }
        try transaction.replaceRecoveryCodes(of: user, hashes: hashes)
        return codes
    }

    // MARK: Management of an enrolled account

    /// Checks the proof of possession required from ordinary users (a current TOTP or recovery
    /// code). `code` nil is allowed only when `codeRequired` is false. Failures count toward lockout.
    private func authorise(_ transaction: any AccountTransaction, account: inout AccountRecord,
                           code: [UInt8]?, codeRequired: Bool, _ moment: Moment) throws -> (Status, AuditReason, LockoutEvent?)? {
        guard let enrollment = account.enrollment else { return (.notEnrolled, .notEnrolled, nil) }
        if account.lockedUntil(at: moment.now) != nil, code != nil || codeRequired {
            return (.lockedOut, .lockedOut, nil)
        }
        guard let code else { return codeRequired ? (.codeRequired, .codeRequired, nil) : nil }
        let outcome = try check(code: code, account: &account, enrollment: enrollment, transaction, moment)
        if outcome.status == .accepted { return nil }
        try transaction.save(account)
        return (outcome.status, outcome.reason, outcome.lockoutStarted)
    }

    public func regenerateRecoveryCodes(_ transaction: any AccountTransaction, user: String, code: [UInt8]?,
                                        codeRequired: Bool, at moment: Moment) throws -> ManagementOutcome<[String]> {
        guard var account = try transaction.account(named: user) else { return .refused(.notEnrolled, .notEnrolled) }
        if let (status, reason, lockout) = try authorise(transaction, account: &account, code: code,
                                                          codeRequired: codeRequired, moment) {
            var outcome = ManagementOutcome<[String]>.refused(status, reason)
            outcome.lockoutStarted = lockout
            return outcome
        }
        try transaction.save(account)
        return .ok(try newRecoveryCodes(transaction, user: user))
    }

    public func disable(_ transaction: any AccountTransaction, user: String, code: [UInt8]?,
                        codeRequired: Bool, at moment: Moment) throws -> ManagementOutcome<Bool> {
        guard var account = try transaction.account(named: user) else { return .refused(.notEnrolled, .notEnrolled) }
        if let (status, reason, lockout) = try authorise(transaction, account: &account, code: code,
                                                          codeRequired: codeRequired, moment) {
            var outcome = ManagementOutcome<Bool>.refused(status, reason)
            outcome.lockoutStarted = lockout
            return outcome
        }
        try transaction.deleteAccount(named: user)
        return .ok(true)
    }

    public func reset(_ transaction: any AccountTransaction, user: String) throws -> ManagementOutcome<Bool> {
        guard try transaction.account(named: user) != nil else { return .refused(.notEnrolled, .notEnrolled) }
        try transaction.deleteAccount(named: user)
        return .ok(true)
    }

    public func unlock(_ transaction: any AccountTransaction, user: String) throws -> ManagementOutcome<Bool> {
        guard var account = try transaction.account(named: user) else { return .refused(.notEnrolled, .notEnrolled) }
        account.clearLockout()
        // Unlocking is the administrator's answer to "my codes stop working": a learned drift
        // may be the cause, so it goes too.
        account.driftSteps = 0
        try transaction.save(account)
        return .ok(true)
    }

    // MARK: Reading

    public func isEnrolled(_ transaction: any AccountTransaction, user: String) throws -> Bool {
        try transaction.account(named: user)?.enrollment != nil
    }

    public func status(_ transaction: any AccountTransaction, user: String, at moment: Moment) throws -> AccountStatus {
        guard let account = try transaction.account(named: user) else {
            return AccountStatus(name: user, isEnrolled: false, pending: false, recoveryCodesLeft: 0, failures: 0, driftSteps: 0)
        }
        return try status(of: account, transaction, moment)
    }

    /// Up to `limit` accounts whose names sort after `after` (byte order), from the first when nil.
    public func list(_ transaction: any AccountTransaction, after: String?, limit: Int, at moment: Moment) throws -> [AccountStatus] {
        try transaction.accounts(after: after, limit: limit).map { try status(of: $0, transaction, moment) }
    }

    private func status(of account: AccountRecord, _ transaction: any AccountTransaction, _ moment: Moment) throws -> AccountStatus {
        AccountStatus(name: account.name, isEnrolled: account.enrollment != nil, pending: account.pending != nil,
                      enrolledSince: account.enrollment?.createdAt, lastUsed: account.lastUsedAt,
                      recoveryCodesLeft: try transaction.recoveryCodesLeft(of: account.name),
                      failures: account.failuresCounting(at: moment.now),
                      lockedUntil: account.lockedUntil(at: moment.now), driftSteps: account.driftSteps)
    }
}
