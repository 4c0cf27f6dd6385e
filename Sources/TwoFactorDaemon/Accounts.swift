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
    public var hotpLookAhead: Int
    public var hotpResyncWindow: Int

    public init(config: DaemonConfig) {
        parameters = config.parameters
        issuer = config.issuer
        window = config.window
        maxFailures = config.maxFailures
        lockoutSeconds = config.lockoutSeconds
        lockoutMaxSeconds = config.lockoutMaxSeconds
        driftLearning = config.driftLearning
        driftMaxSteps = config.driftMaxSteps
        hotpLookAhead = config.hotpLookAhead
        hotpResyncWindow = config.hotpResyncWindow
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
    /// "totp" or "hotp" for an enrolled account.
    public var kind: String? = nil
}

public struct EnrollmentStart: Sendable, Equatable {
    public var secret: [UInt8]
    public var parameters: OTPParameters
    public var issuer: String
    public var uri: String
    public var kind: OTPKind = .totp
    /// HOTP: the counter the URI starts the token at.
    public var counter: UInt64? = nil
}

/// A key set by root for another account (`twofactor admin enroll`, an import): a hardware
/// token's secret or a google-authenticator file's, with the state that comes with it.
public struct AdminEnrollment: Sendable {
    public var secret: [UInt8]
    public var kind: OTPKind
    public var parameters: OTPParameters
    /// HOTP: the next counter the token will show.
    public var counter: UInt64?
    /// TOTP: the highest step already used elsewhere; codes up to it are refused as replays.
    public var lastStep: Int64?
    /// The account's own window (steps either side for TOTP, look-ahead for HOTP).
    public var window: Int?
    /// The account's recovery codes as typed (imported scratch codes); nil: 8 new ones are made.
    public var importedCodes: [String]?
    /// Replace an existing enrollment (otherwise alreadyEnrolled).
    public var replace: Bool

    public init(secret: [UInt8], kind: OTPKind, parameters: OTPParameters, counter: UInt64? = nil, lastStep: Int64? = nil,
                window: Int? = nil, importedCodes: [String]? = nil, replace: Bool = false) {
        self.secret = secret
        self.kind = kind
        self.parameters = parameters
        self.counter = counter
        self.lastStep = lastStep
        self.window = window
        self.importedCodes = importedCodes
        self.replace = replace
    }
}

/// What adminEnroll answers: new recovery codes (none when they were imported) and how many the
/// account has.
public struct AdminEnrollmentResult: Sendable, Equatable {
    public var newRecoveryCodes: [String]
    public var recoveryCodesLeft: Int
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
    let keySource: KeySource
    var keys: DerivedKeys { keySource.current }

    public init(policy: AccountPolicy, keys: DerivedKeys) {
        self.init(policy: policy, keySource: KeySource(fixed: keys))
    }

    public init(policy: AccountPolicy, keySource: KeySource) {
        self.policy = policy
        self.keySource = keySource
    }

    /// Opens a sealed secret; if it does not open, re-reads a key file that changed (a rotation
    /// on another node sealed it under a key this daemon has not read yet) and tries once more.
    func openSecret(_ sealed: [UInt8], account: String) throws -> [UInt8] {
        do {
            return try keys.openSecret(sealed, account: account)
        } catch {
            guard keySource.refresh() else { throw error }
            return try keys.openSecret(sealed, account: account)
        }
    }

    /// Seals under the newest key the file names, never one a rotation has retired meanwhile.
    func sealSecret(_ secret: [UInt8], account: String) throws -> [UInt8] {
        keySource.refresh()
        return try keys.sealSecret(secret, account: account)
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
        case .totp(let digits) where enrollment.kind == OTPKind.hotp.rawValue:
            outcome = try checkHOTP(digits, account: &account, enrollment: enrollment)
        case .totp(let digits):
            outcome = try checkTOTP(digits, account: &account, enrollment: enrollment, moment)
        case .recovery(let normalized):
            outcome = try checkRecoveryCode(normalized, account: account, transaction, moment)
        }
        // RFC 4226 7.4 asks for two consecutive codes: anything but the first of them ends a
        // resynchronisation in progress.
        if outcome.reason != .resyncPending { account.hotpResyncCounter = nil }
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
                           at time: Int64, driftSteps: Int64, window: Int, usedThrough: Int64? = nil) throws -> TOTPMatch? {
        var secret = try openSecret(sealed, account: account)
        let found = TOTP(secret: secret, parameters: parameters).match(code: digits, at: time, window: window,
                                                                       driftSteps: driftSteps, usedThrough: usedThrough)
        ConstantTime.zero(&secret)
        return found
    }

    private func checkTOTP(_ digits: String, account: inout AccountRecord, enrollment: EnrollmentRecord,
                           _ moment: Moment) throws -> VerifyOutcome {
        let drift = policy.driftLearning ? account.driftSteps : 0
        guard let match = try matchCode(digits, sealed: enrollment.sealedSecret, account: account.name,
                                        parameters: try parameters(of: enrollment), at: moment.otpTime,
                                        driftSteps: drift, window: account.window ?? policy.window,
                                        usedThrough: account.lastStep) else {
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

    /// RFC 4226: the next expected counter and hotp_look_ahead (or the account's window) after
    /// it; beyond that, up to hotp_resync_window, the first of two consecutive codes
    /// (section 7.4). A code for a counter already passed is a replay.
    private func checkHOTP(_ digits: String, account: inout AccountRecord, enrollment: EnrollmentRecord) throws -> VerifyOutcome {
        let parameters = try parameters(of: enrollment)
        let next = UInt64(max(0, account.hotpCounter ?? 0))
        let lookAhead = UInt64(max(0, account.window ?? policy.hotpLookAhead))
        let resyncWindow = UInt64(max(0, policy.hotpResyncWindow))
        var secret = try openSecret(enrollment.sealedSecret, account: account.name)
        defer { ConstantTime.zero(&secret) }
        func match(_ counters: ClosedRange<UInt64>) -> UInt64? {
            HOTP.match(code: digits, secret: secret, algorithm: parameters.algorithm, digits: parameters.digits,
                       counters: counters)
        }
        var accepted = VerifyOutcome(.accepted, .ok)
        accepted.method = .hotp
        if let counter = match(next...Self.adding(next, lookAhead)) {
            account.hotpCounter = Int64(clamping: Self.adding(counter, 1))
            return accepted
        }
        if let first = account.hotpResyncCounter.map({ UInt64(max(0, $0)) }), first >= next,
           match(Self.adding(first, 1)...Self.adding(first, 1)) != nil {
            account.hotpCounter = Int64(clamping: Self.adding(first, 2))
            return accepted
        }
        if resyncWindow > lookAhead,
           let counter = match(Self.adding(next, lookAhead + 1)...Self.adding(next, resyncWindow)) {
            account.hotpResyncCounter = Int64(clamping: counter)
            return VerifyOutcome(.wrongCode, .resyncPending)
        }
        if next > 0, match((next - min(next, lookAhead + 1))...(next - 1)) != nil {
            return VerifyOutcome(.codeReused, .codeReused)
        }
        return VerifyOutcome(.wrongCode, .wrongCode)
    }

    static func adding(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
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
                            kind: OTPKind = .totp, at moment: Moment) throws -> ManagementOutcome<EnrollmentStart> {
        var account = try transaction.account(named: user) ?? AccountRecord(name: user)
        if account.enrollment != nil { return .refused(.alreadyEnrolled, .alreadyEnrolled) }
        let parameters = policy.parameters
        // RFC 4226 asks for at least 128 bits, RFC 6238 for a key as long as the hash output.
        let length = switch parameters.algorithm { case .sha1: 20; case .sha256: 32; case .sha512: 64 }
        var secret = SecureRandom.bytes(length)
        let sealed = try sealSecret(secret, account: user)
        account.pending = EnrollmentRecord(sealedSecret: sealed, algorithm: parameters.algorithm.rawValue,
                                           digits: parameters.digits, period: parameters.period, createdAt: moment.now,
                                           kind: kind.rawValue)
        try transaction.save(account)
        let shownIssuer = issuer ?? policy.issuer
        // A new HOTP token starts at counter 0.
        let counter: UInt64? = kind == .hotp ? 0 : nil
        let uri = OTPAuthURI(issuer: shownIssuer, account: user, secret: secret, parameters: parameters,
                             hotpCounter: counter).uriString
        defer { ConstantTime.zero(&secret) }
        return .ok(EnrollmentStart(secret: secret, parameters: parameters, issuer: shownIssuer, uri: uri,
                                   kind: kind, counter: counter))
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
        if pending.kind == OTPKind.hotp.rawValue {
            let parameters = try parameters(of: pending)
            var secret = try openSecret(pending.sealedSecret, account: user)
            let counter = HOTP.match(code: digits, secret: secret, algorithm: parameters.algorithm, digits: parameters.digits,
                                     counters: 0...UInt64(max(0, policy.hotpLookAhead)))
            ConstantTime.zero(&secret)
            guard let counter else { return .refused(.wrongCode, .wrongCode) }
            account.enrollment = pending
            account.enrollment?.createdAt = moment.now
            account.pending = nil
            account.lastStep = nil
            account.hotpCounter = Int64(counter + 1)  // the confirming code cannot also log in
            account.hotpResyncCounter = nil
            account.window = nil
            account.lastUsedAt = nil
            account.clearLockout()
            account.driftSteps = 0
            try transaction.save(account)
            return .ok(try newRecoveryCodes(transaction, user: user))
        }
        guard let match = try matchCode(digits, sealed: pending.sealedSecret, account: user,
                                        parameters: try parameters(of: pending), at: moment.otpTime,
                                        driftSteps: 0, window: policy.window) else {
            return .refused(.wrongCode, .wrongCode)
        }
        var confirmed = pending
        confirmed.createdAt = moment.now
        account.enrollment = confirmed
        account.pending = nil
        account.lastStep = match.step  // the confirming code cannot also log in
        account.hotpCounter = nil
        account.hotpResyncCounter = nil
        account.window = nil
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
        // An account row that only held the pending enrollment goes; one that counts grace
        // logins stays, or cancelling would hand them out again.
        if account.enrollment == nil && account.failures == 0 && account.lockedUntil == nil && account.graceLoginsUsed == 0 {
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

    /// Root sets `user`'s key and its state in one unit: an existing enrollment is kept
    /// (alreadyEnrolled) unless `replace`, in which case it goes with its recovery codes and state.
    public func adminEnroll(_ transaction: any AccountTransaction, user: String, _ request: AdminEnrollment,
                            at moment: Moment) throws -> ManagementOutcome<AdminEnrollmentResult> {
        if let existing = try transaction.account(named: user) {
            if existing.enrollment != nil && !request.replace { return .refused(.alreadyEnrolled, .alreadyEnrolled) }
            try transaction.deleteAccount(named: user)
        }
        var hashes: [[UInt8]] = []
        for code in request.importedCodes ?? [] {
            guard case .recovery(let normalized) = CodeInput.classify(Array(code.utf8), digits: request.parameters.digits) else {
                return .refused(.badRequest, .badRequest)
            }
            hashes.append(keys.hashRecoveryCode(normalized: normalized))
        }
        var account = AccountRecord(name: user)
        let sealed = try sealSecret(request.secret, account: user)
        account.enrollment = EnrollmentRecord(sealedSecret: sealed, algorithm: request.parameters.algorithm.rawValue,
                                              digits: request.parameters.digits, period: request.parameters.period,
                                              createdAt: moment.now, kind: request.kind.rawValue)
        account.lastStep = request.kind == .totp ? request.lastStep : nil
        account.hotpCounter = request.kind == .hotp ? Int64(clamping: request.counter ?? 0) : nil
        account.window = request.window
        try transaction.save(account)
        var fresh: [String] = []
        if request.importedCodes == nil {
            fresh = try newRecoveryCodes(transaction, user: user)
        } else {
            try transaction.replaceRecoveryCodes(of: user, hashes: Array(Set(hashes.map { $0 })))
        }
        return .ok(AdminEnrollmentResult(newRecoveryCodes: fresh, recoveryCodesLeft: try transaction.recoveryCodesLeft(of: user)))
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
        try transaction.loginState(of: user).enrolled
    }

    /// The login policy's decision for `user` (LoginPolicy.decide), from the account's stored
    /// enrollment and grace logins. With `countGraceLogin` (a login that has succeeded: the
    /// module's credentials phase), a login let through on enforcement's grace logins is counted.
    public func decide(_ transaction: any AccountTransaction, user: String, remoteHost: String?, policy: LoginPolicy,
                       membership: () -> GroupMembership?, at moment: Moment, countGraceLogin: Bool) throws -> (PolicyDecision, Int?) {
        let state = try transaction.loginState(of: user)
        let decision = policy.decide(enrolled: state.enrolled, remoteHost: remoteHost, membership: membership,
                                     now: moment.now, graceLoginsUsed: state.graceLoginsUsed)
        guard countGraceLogin, decision.rule == .enforceGrace, policy.countsGraceLogins(at: moment.now) else {
            return (decision, nil)
        }
        // Counting writes the whole row back, so it is read whole (in the same transaction).
        var account = try transaction.account(named: user) ?? AccountRecord(name: user)
        account.graceLoginsUsed += 1
        try transaction.save(account)
        return (decision, account.graceLoginsUsed)
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
                      lockedUntil: account.lockedUntil(at: moment.now), driftSteps: account.driftSteps,
                      kind: account.enrollment?.kind)
    }
}
