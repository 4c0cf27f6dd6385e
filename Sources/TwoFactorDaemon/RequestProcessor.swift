// Turns one decoded request into one answer: permission checks, the unit of work, the audit line.
import Foundation
import TwoFactorCore
import TwoFactorWire

public final class RequestProcessor: Sendable {
    let store: any AccountStore
    let rules: AccountRules
    let clock: ClockMonitor
    let audit: AuditLog
    let loginPolicy: LoginPolicy
    let wallClock: @Sendable () -> Int64
    /// node_name, for `health`.
    let node: String

    public init(store: any AccountStore, rules: AccountRules, clock: ClockMonitor, audit: AuditLog,
                loginPolicy: LoginPolicy = LoginPolicy(config: DaemonConfig()), node: String = "",
                wallClock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.node = node
        self.store = store
        self.rules = rules
        self.clock = clock
        self.audit = audit
        self.loginPolicy = loginPolicy
        self.wallClock = wallClock
    }

    /// Answers `request` from `caller`. `respond` is called exactly once, possibly on another thread.
    public func handle(_ request: WireMessage, caller: Caller, respond: @escaping @Sendable (WireMessage) -> Void) {
        guard request.version == WireProtocol.version else {
            respond(Self.answer(.unsupportedVersion, message: "protocol version \(request.version) is not supported; this daemon speaks version \(WireProtocol.version)"))
            return
        }
        guard let operation = request.operation else {
            respond(Self.answer(.unknownOperation, message: "unknown operation 0x\(String(request.code, radix: 16))"))
            return
        }
        let now = wallClock()
        var moment: Moment { Moment(now: now, otpTime: clock.verificationTime()) }
        switch operation {
        // `check` compares no code, so it skips the clock check's reading of the kernel clock.
        case .check: check(request, caller, Moment(now: now, otpTime: now), respond)
        case .verify: verify(request, caller, moment, respond)
        case .enrollBegin, .enrollConfirm, .enrollCancel, .regenerateRecoveryCodes, .disable, .status,
             .resetAccount, .unlockAccount, .adminEnroll:
            manageAccount(operation, request, caller, moment, respond)
        case .listAccounts: list(request, caller, moment, respond)
        case .clockStatus: clockStatus(caller, respond)
        case .health: health(caller, respond)
        }
    }

    // MARK: Verification

    /// Does this login need a code? The login policy decides (LoginPolicy.decide); the answer
    /// names the rule and the audit line records it, so no exempt login goes unrecorded.
    private func check(_ request: WireMessage, _ caller: Caller, _ moment: Moment,
                       _ respond: @escaping @Sendable (WireMessage) -> Void) {
        guard let user = Self.user(request) else { respond(Self.answer(.badRequest, message: "a valid user is required")); return }
        guard caller.mayVerify(user) || caller.mayAdminister else {
            audit.management("check", account: user, caller: caller, result: .denied, reason: .permissionDenied)
            respond(Self.answer(.permissionDenied, message: "you may only ask about your own account"))
            return
        }
        let service = Self.optionalText(request, .service)
        let remoteHost = Self.remoteHost(request, caller)
        let tty = Self.optionalText(request, .tty)
        let rules = self.rules, policy = self.loginPolicy, audit = self.audit
        // The module asks in three phases (docs/PROTOCOL.md): authentication (audited here),
        // account management (enrollment at login) and credentials, which only follows a
        // successful login and so is where a grace login is counted (only root's count); phase 3
        // reports a name without a passwd entry.
        let phase = request.uint8(.phase) ?? 0
        let counting = phase == 2 && caller.isRoot
        let decide: @Sendable (any AccountTransaction) throws -> (PolicyDecision, Int?) = { transaction in
            // Phase 3: the module found no passwd entry for the name; reported for the audit log.
            if phase == 3 { return (PolicyDecision(outcome: .unknownUser, rule: .unknownUser), nil) }
            return try rules.decide(transaction, user: user, remoteHost: remoteHost, policy: policy,
                             membership: { GroupMembership.of(user) }, at: moment, countGraceLogin: counting)
        }
        // Runs where the store answers: the connection's thread or the store's read queue.
        let completion: @Sendable (Result<(PolicyDecision, Int?), StoreError>) -> Void = { result in
            guard case .success(let (decision, used)) = result else {
                audit.check(account: user, service: service, remoteHost: remoteHost, tty: tty, rule: "-", detail: nil,
                            result: .error, reason: .internalError)
                respond(Self.internalError())
                return
            }
            let (status, auditResult, reason): (Status, AuditResult, AuditReason) = switch decision.outcome {
            case .code: (.enrolled, .ok, .ok)
            case .exempt: (.exempt, .ok, .ok)
            case .waive: (.notEnrolled, .ok, .notEnrolled)
            case .required: (.notEnrolled, .rejected, .required)
            case .unknownUser: (.notEnrolled, .rejected, .unknownUser)
            }
            if let used {  // committed
                audit.graceLogin(account: user, service: service, remoteHost: remoteHost, used: used, allowed: policy.graceLogins)
            }
            if phase == 0 || phase == 3 {
                audit.check(account: user, service: service, remoteHost: remoteHost, tty: tty, rule: decision.rule.rawValue,
                            detail: decision.detail, result: auditResult, reason: reason)
            }
            var answer = WireMessage(status: status)
            Self.appendText(&answer, .rule, decision.rule.rawValue)
            if let detail = decision.detail { Self.appendText(&answer, .ruleDetail, detail) }
            if decision.outcome == .required || decision.outcome == .unknownUser { answer.append(.required, bool: true) }
            if let message = decision.message { Self.appendText(&answer, .message, message) }
            respond(answer)
        }
        if counting {
            store.write(decide, completion: completion)
        } else if !policy.looksUpGroups, let decided = store.readNow(decide) {
            // Usually answered right here, on the connection's thread, with no hop to the store's
            // threads; not when the policy must ask NSS about groups (that may block, and would
            // hold one of the store's few immediate readers meanwhile).
            completion(.success(decided))
        } else {
            store.read(decide, completion: completion)
        }
    }

    private func verify(_ request: WireMessage, _ caller: Caller, _ moment: Moment,
                        _ respond: @escaping @Sendable (WireMessage) -> Void) {
        let service = Self.optionalText(request, .service)
        let remoteHost = Self.remoteHost(request, caller)
        let tty = Self.optionalText(request, .tty)
        let suspectOffset = clock.suspectOffset()
        let audit = self.audit
        let userField = request.string(.user) ?? ""
        let log: @Sendable (String?, AuditResult, AuditReason) -> Void = { method, result, reason in
            audit.verify(account: userField, service: service, remoteHost: remoteHost, tty: tty, method: method,
                         result: result, reason: reason, clockOffset: suspectOffset)
        }
        guard let user = Self.user(request), let code = request.bytes(.code) else {
            log(nil, .rejected, .badRequest)
            respond(Self.answer(.badRequest, message: "verify needs a valid user and a code"))
            return
        }
        guard caller.mayVerify(user) else {
            log(nil, .rejected, .permissionDenied)
            respond(Self.answer(.permissionDenied, message: "only root may verify codes for another account"))
            return
        }
        let rules = self.rules
        // Waits here, on the connection's thread, so the audit line and the answer are made here
        // and not on the store's writer, which every verify shares (docs/PERFORMANCE-NOTES.md).
        let outcome: VerifyOutcome
        do {
            outcome = try store.writeAndWait { try rules.verify($0, user: user, code: code, at: moment) }
        } catch {
            log(nil, .error, .internalError)
            respond(Self.internalError())
            return
        }
        if let lockout = outcome.lockoutStarted {
            audit.lockout(account: user, until: lockout.until, failures: lockout.failures, remoteHost: remoteHost)
        }
        var answer = WireMessage(status: outcome.status)
        switch outcome.status {
        case .accepted:
            log(outcome.method == .recoveryCode ? "recovery" : outcome.method == .hotp ? "hotp" : "totp", .accepted, .ok)
            if let method = outcome.method { answer.append(.method, uint8: method.rawValue) }
            if let left = outcome.recoveryCodesLeft { answer.append(.recoveryCodesLeft, uint32: UInt32(left)) }
        default:
            log(nil, .rejected, outcome.reason)
            if let until = outcome.lockedUntil { answer.append(.lockedUntil, uint64: UInt64(max(0, until))) }
            if outcome.status == .wrongCode, let offset = suspectOffset {
                let micros = Int64((offset * 1_000_000).rounded())
                answer.append(.clockOffsetMicros, int64: micros)
                Self.appendText(&answer, .message, Product.clockHint(offsetMicros: micros))
            } else if outcome.reason == .invalidCode {
                Self.appendText(&answer, .message, "that is not a code of the expected form")
            } else if outcome.reason == .resyncPending {
                Self.appendText(&answer, .message, Self.resyncMessage)
            }
        }
        respond(answer)
    }

    // MARK: Management

    private func manageAccount(_ operation: TwoFactorWire.Operation, _ request: WireMessage, _ caller: Caller, _ moment: Moment,
                               _ respond: @escaping @Sendable (WireMessage) -> Void) {
        let name = Self.auditName(operation)
        let audit = self.audit
        guard let user = Self.user(request) else {
            audit.management(name, account: request.string(.user), caller: caller, result: .rejected, reason: .badRequest)
            respond(Self.answer(.badRequest, message: "a valid user is required"))
            return
        }
        // Setting a key chosen by the caller is root's alone (it runs the import, reading users' files).
        if operation == .adminEnroll && !caller.isRoot {
            audit.management(name, account: user, caller: caller, result: .denied, reason: .permissionDenied)
            respond(Self.answer(.permissionDenied, message: "only root may set another account's key"))
            return
        }
        let adminOnly = operation == .resetAccount || operation == .unlockAccount
        guard adminOnly ? caller.mayAdminister(user) : caller.mayManage(user) else {
            audit.management(name, account: user, caller: caller, result: .denied, reason: .permissionDenied)
            let message = !adminOnly ? "you may only manage your own account"
                : caller.mayAdminister ? "administrators may not reset or unlock their own account; use 'twofactor disable' with a code, or ask another administrator"
                : "only root and members of the admin group may do this"
            respond(Self.answer(.permissionDenied, message: message))
            return
        }
        let code = request.bytes(.code)
        // Changes to an enrolled account need proof of possession, except from an administrator
        // acting on someone else's account (Caller.mayAdminister(_:)).
        let codeRequired = !caller.mayAdminister(user)
        let rules = self.rules
        let issuer = Self.optionalText(request, .issuer)
        var adminEnrollment: AdminEnrollment? = nil
        if operation == .adminEnroll {
            switch Self.adminEnrollment(request) {
            case .success(var parsed):
                // On root's own account, never replace (admin powers are for other people's accounts).
                if !caller.mayAdminister(user) { parsed.replace = false }
                adminEnrollment = parsed
            case .failure(let problem):
                audit.management(name, account: user, caller: caller, result: .rejected, reason: .badRequest)
                respond(Self.answer(.badRequest, message: problem.message))
                return
            }
        }
        let adminRequest = adminEnrollment
        let kind = request.string(.otpKind).flatMap(OTPKind.init(rawValue:)) ?? .totp
        let wantsQR = request.bytes(.qrText) != nil
        if operation == .enrollConfirm && code == nil {
            audit.management(name, account: user, caller: caller, result: .rejected, reason: .badRequest)
            respond(Self.answer(.badRequest, message: "enrollConfirm needs the code shown by the authenticator"))
            return
        }
        if operation == .status {
            store.read({ try rules.status($0, user: user, at: moment) }) { result in
                guard case .success(let status) = result else {
                    audit.management(name, account: user, caller: caller, result: .error, reason: .internalError)
                    respond(Self.internalError())
                    return
                }
                audit.management(name, account: user, caller: caller, result: .ok, reason: .ok)
                var answer = WireMessage(status: .ok)
                Self.appendStatus(&answer, status)
                respond(answer)
            }
            return
        }

        store.write({ transaction -> WireMessageOutcome in
            switch operation {
            case .enrollBegin:
                let outcome = try rules.enrollBegin(transaction, user: user, issuer: issuer, kind: kind, at: moment)
                var answer = WireMessage(status: outcome.status)
                if let start = outcome.value {
                    Self.appendText(&answer, .secret, Base32.encode(start.secret))
                    Self.appendText(&answer, .uri, start.uri)
                    answer.append(.digits, uint8: UInt8(start.parameters.digits))
                    answer.append(.period, uint32: UInt32(start.parameters.period))
                    Self.appendText(&answer, .algorithm, start.parameters.algorithm.rawValue)
                    Self.appendText(&answer, .issuer, start.issuer)
                    Self.appendText(&answer, .otpKind, start.kind.rawValue)
                    if let counter = start.counter { answer.append(.counter, uint64: counter) }
                    // For enrollment at login: the PAM module links no QR library.
                    if wantsQR, let matrix = QRMatrix(qrEncoding: start.uri) {
                        Self.appendText(&answer, .qrText, matrix.halfBlockLines().joined(separator: "\n"))
                    }
                }
                return WireMessageOutcome(answer: answer, reason: outcome.reason, lockout: nil)
            case .enrollConfirm:
                return .codes(try rules.enrollConfirm(transaction, user: user, code: code ?? [], at: moment))
            case .regenerateRecoveryCodes:
                return .codes(try rules.regenerateRecoveryCodes(transaction, user: user, code: code,
                                                                codeRequired: codeRequired, at: moment))
            case .enrollCancel: return .plain(try rules.enrollCancel(transaction, user: user))
            case .disable:
                return .plain(try rules.disable(transaction, user: user, code: code, codeRequired: codeRequired, at: moment))
            case .resetAccount: return .plain(try rules.reset(transaction, user: user))
            case .unlockAccount: return .plain(try rules.unlock(transaction, user: user))
            case .adminEnroll:
                guard let adminEnrollment = adminRequest else { throw StoreError("adminEnroll without its request") }
                let outcome = try rules.adminEnroll(transaction, user: user, adminEnrollment, at: moment)
                var answer = WireMessage(status: outcome.status)
                if let result = outcome.value {
                    for code in result.newRecoveryCodes { Self.appendText(&answer, .recoveryCode, code) }
                    answer.append(.recoveryCodesLeft, uint32: UInt32(clamping: result.recoveryCodesLeft))
                } else if outcome.status == .badRequest {
                    Self.appendText(&answer, .message, "an imported recovery code is neither a recovery code nor an 8-digit scratch code")
                }
                return WireMessageOutcome(answer: answer, reason: outcome.reason, lockout: nil)
            default: throw StoreError("operation \(operation) is not an account change")
            }
        }) { result in
            switch result {
            case .success(let outcome):
                if let lockout = outcome.lockout { audit.lockout(account: user, until: lockout.until, failures: lockout.failures) }
                let ok = outcome.answer.status == .ok
                audit.management(name, account: user, caller: caller, result: ok ? .ok : .rejected, reason: outcome.reason)
                respond(outcome.answer)
            case .failure:
                audit.management(name, account: user, caller: caller, result: .error, reason: .internalError)
                respond(Self.internalError())
            }
        }
    }

    /// Accounts read for one page of listAccounts. Each record is at most ~330 bytes (a 256-byte
    /// name and the status fields), so a full page stays well under maxResponseLength; the byte
    /// check below is the rule, this only bounds the rows read.
    static let listPageRows = 2000

    /// One page of accounts in name (byte) order. With `listAfter` the page starts after that
    /// user and `listMore` says whether another follows. Without it (clients from before paging)
    /// the answer must hold every account, or it is refused rather than silently cut short.
    private func list(_ request: WireMessage, _ caller: Caller, _ moment: Moment, _ respond: @escaping @Sendable (WireMessage) -> Void) {
        guard caller.mayAdminister else {
            audit.management("list", account: nil, caller: caller, result: .denied, reason: .permissionDenied)
            respond(Self.answer(.permissionDenied, message: "only root and members of the admin group may list accounts"))
            return
        }
        let paged = request.bytes(.listAfter) != nil
        let afterBytes = request.bytes(.listAfter) ?? []
        guard afterBytes.count <= Product.maxUserNameLength, let after = String(validating: afterBytes, as: UTF8.self) else {
            audit.management("list", account: nil, caller: caller, result: .rejected, reason: .badRequest)
            respond(Self.answer(.badRequest, message: "listAfter must be a user name"))
            return
        }
        let rules = self.rules, audit = self.audit
        // The rows of one page and one more, to learn whether another page follows.
        store.read({ try rules.list($0, after: after.isEmpty ? nil : after, limit: Self.listPageRows + 1, at: moment) }) { result in
            guard case .success(let accounts) = result else {
                audit.management("list", account: nil, caller: caller, result: .error, reason: .internalError)
                respond(Self.internalError())
                return
            }
            var answer = WireMessage(status: .ok)
            // version, code and the listMore field: what the accounts must leave room for.
            var payloadLength = 2 + 4
            var more = false
            for (index, account) in accounts.enumerated() {
                if index == Self.listPageRows { more = true; break }
                var nested = WireMessage(code: 0)
                Self.appendText(&nested, .user, account.name)
                Self.appendStatus(&nested, account)
                do {
                    try answer.append(.account, nested: nested)
                } catch {
                    audit.management("list", account: nil, caller: caller, result: .error, reason: .internalError)
                    respond(Self.internalError())
                    return
                }
                payloadLength += 3 + (answer.fields.last?.value.count ?? 0)
                if payloadLength > WireProtocol.maxResponseLength {
                    answer.fields.removeLast()
                    more = true
                    break
                }
            }
            if more && !paged {
                audit.management("list", account: nil, caller: caller, result: .error, reason: .internalError)
                respond(Self.answer(.internalError, message: "too many accounts for one answer; this client does not page (listAfter)"))
                return
            }
            if paged { answer.append(.listMore, bool: more) }
            // One audit line per listing, at its first page.
            if after.isEmpty { audit.management("list", account: nil, caller: caller, result: .ok, reason: .ok) }
            respond(answer)
        }
    }

    private func clockStatus(_ caller: Caller, _ respond: @escaping @Sendable (WireMessage) -> Void) {
        guard caller.mayAdminister else {
            audit.management("clock", account: nil, caller: caller, result: .denied, reason: .permissionDenied)
            respond(Self.answer(.permissionDenied, message: "only root and members of the admin group may read the clock check"))
            return
        }
        let reading = clock.reading()
        var answer = WireMessage(status: .ok)
        Self.appendText(&answer, .clockState, reading.state.rawValue)
        if let offset = reading.offsetSeconds { answer.append(.clockOffsetMicros, int64: Self.micros(offset)) }
        if let delay = reading.delaySeconds { answer.append(.clockDelayMicros, int64: Self.micros(delay)) }
        if let server = reading.server { Self.appendText(&answer, .clockServer, server) }
        if let stratum = reading.stratum { answer.append(.clockStratum, uint8: UInt8(clamping: stratum)) }
        if let measured = reading.measuredAt { answer.append(.clockMeasuredAt, uint64: UInt64(max(0, measured))) }
        answer.append(.kernelSynchronized, bool: reading.kernelSynchronized)
        if let error = reading.kernelErrorMicros { answer.append(.kernelErrorMicros, int64: error) }
        if let remedy = reading.remedy { Self.appendText(&answer, .clockRemedy, remedy) }
        answer.append(.clockCompensation, bool: reading.compensation)
        if let correction = reading.correctionSeconds { answer.append(.clockCorrectionMicros, int64: Self.micros(correction)) }
        for server in reading.falsetickers { Self.appendText(&answer, .clockFalseticker, server) }
        Self.appendText(&answer, .message, reading.summary)
        audit.management("clock", account: nil, caller: caller, result: .ok, reason: .ok)
        respond(answer)
    }

    /// How long `health` waits for the store's probe read before calling it unreachable.
    static let healthProbeTimeout = 2.0

    private func health(_ caller: Caller, _ respond: @escaping @Sendable (WireMessage) -> Void) {
        guard caller.mayAdminister else {
            audit.management("health", account: nil, caller: caller, result: .denied, reason: .permissionDenied)
            respond(Self.answer(.permissionDenied, message: "only root and members of the admin group may read the daemon's health"))
            return
        }
        let audit = self.audit, reading = clock.reading(), node = self.node
        let monitored = store as? MonitoredStore
        let report: @Sendable (MonitoredStore.Health?) -> Void = { health in
            var answer = WireMessage(status: .ok)
            Self.appendText(&answer, .nodeName, node)
            Self.appendText(&answer, .storeKind, monitored?.location.kind ?? "unknown")
            if let location = monitored?.location { Self.appendText(&answer, .storeLocation, location.description) }
            answer.append(.storeReachable, bool: health?.reachable ?? false)
            if let latency = health?.latencySeconds { answer.append(.storeLatencyMicros, int64: Self.micros(latency)) }
            answer.append(.storeErrors, uint32: UInt32(clamping: health?.errors ?? 0))
            if let error = health?.lastError { Self.appendText(&answer, .storeLastError, error) }
            if let at = health?.lastErrorAt { answer.append(.storeLastErrorAt, uint64: UInt64(max(0, at))) }
            Self.appendText(&answer, .clockState, reading.state.rawValue)
            if let offset = reading.offsetSeconds { answer.append(.clockOffsetMicros, int64: Self.micros(offset)) }
            Self.appendText(&answer, .message, reading.summary)
            audit.management("health", account: nil, caller: caller, result: .ok, reason: .ok)
            respond(answer)
        }
        guard let monitored else { report(nil); return }
        monitored.probe(timeout: Self.healthProbeTimeout, completion: report)
    }

    // MARK: Helpers

    static func micros(_ seconds: Double) -> Int64 {
        let value = (seconds * 1_000_000).rounded()
        guard value.isFinite else { return 0 }
        return Int64(max(min(value, 9.2e18), -9.2e18))
    }

    static func auditName(_ operation: TwoFactorWire.Operation) -> String {
        switch operation {
        case .enrollBegin: "enroll-begin"
        case .enrollConfirm: "enroll-confirm"
        case .enrollCancel: "enroll-cancel"
        case .regenerateRecoveryCodes: "regenerate-recovery-codes"
        case .disable: "disable"
        case .status: "status"
        case .listAccounts: "list"
        case .resetAccount: "reset"
        case .unlockAccount: "unlock"
        case .clockStatus: "clock"
        case .adminEnroll: "admin-enroll"
        case .health: "health"
        case .check: "check"
        case .verify: "verify"
        }
    }

    /// The `user` field when it is a plausible account name: UTF-8, 1...Product.maxUserNameLength bytes, no controls.
    static func user(_ request: WireMessage) -> String? {
        guard let bytes = request.bytes(.user), !bytes.isEmpty, bytes.count <= Product.maxUserNameLength else { return nil }
        // Nearly every name is printable ASCII, which has no controls: a byte test, not Unicode's
        // tables (every request pays for this). Anything else takes the full check below.
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { return String(decoding: bytes, as: UTF8.self) }
        guard let name = String(validating: bytes, as: UTF8.self),
              !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
        return name
    }

    /// The login's remote host, believed only from root (sshd, the PAM module's host): any other
    /// caller could name any address, to match an exempt network or to get a stranger banned by
    /// fail2ban through its own wrong codes. Others' lines say rhost=-.
    static func remoteHost(_ request: WireMessage, _ caller: Caller) -> String? {
        caller.isRoot ? optionalText(request, .remoteHost) : nil
    }

    static func optionalText(_ request: WireMessage, _ tag: FieldTag) -> String? {
        guard let bytes = request.bytes(tag), !bytes.isEmpty else { return nil }
        return String(decoding: bytes.prefix(256), as: UTF8.self)
    }

    static func appendText(_ message: inout WireMessage, _ tag: FieldTag, _ text: String) {
        try? message.append(tag, bytes: Array(text.utf8.prefix(WireProtocol.maxFieldLength)))
    }

    static func answer(_ status: Status, message: String) -> WireMessage {
        var answer = WireMessage(status: status)
        appendText(&answer, .message, message)
        return answer
    }

    static func internalError() -> WireMessage {
        answer(.internalError, message: "twofactord could not store the result; nothing was changed")
    }

    static let resyncMessage = "the token is ahead of the server: enter its next code to resynchronise"

    /// The fields of an adminEnroll request, checked; a failure's message says what is wrong.
    static func adminEnrollment(_ request: WireMessage) -> Result<AdminEnrollment, StoreError> {
        guard let text = request.string(.secret), let secret = try? Base32.decode(text),
              (10...64).contains(secret.count) else {
            return .failure(StoreError("adminEnroll needs a base32 secret of 80 to 512 bits"))
        }
        guard let kind = OTPKind(rawValue: request.string(.otpKind) ?? OTPKind.totp.rawValue) else {
            return .failure(StoreError("otpKind must be totp or hotp"))
        }
        guard let algorithm = OTPAlgorithm(rawValue: (request.string(.algorithm) ?? "SHA1").uppercased()) else {
            return .failure(StoreError("algorithm must be SHA1, SHA256 or SHA512"))
        }
        let parameters: OTPParameters
        do {
            parameters = try OTPParameters(algorithm: algorithm, digits: Int(request.uint8(.digits) ?? 6),
                                           period: Int(request.uint32(.period) ?? 30))
        } catch {
            return .failure(StoreError("\(error)"))
        }
        let window = request.uint32(.window).map { Int($0) }
        if let window, window > TOTP.maxWindow { return .failure(StoreError("window must be at most \(TOTP.maxWindow)")) }
        let codes = request.allStrings(.recoveryCode)
        let imported = request.bool(.importedCodes) ?? false
        if codes.count > GoogleAuthenticatorFile.maxScratchCodes || (!imported && !codes.isEmpty) {
            return .failure(StoreError("at most \(GoogleAuthenticatorFile.maxScratchCodes) recovery codes, and only with importedCodes"))
        }
        return .success(AdminEnrollment(secret: secret, kind: kind, parameters: parameters, counter: request.uint64(.counter),
                                        lastStep: request.int64(.lastStep), window: window,
                                        importedCodes: imported ? codes : nil, replace: request.bool(.replace) ?? false))
    }

    static func appendStatus(_ message: inout WireMessage, _ status: AccountStatus) {
        message.append(.isEnrolled, bool: status.isEnrolled)
        message.append(.pending, bool: status.pending)
        if let since = status.enrolledSince { message.append(.enrolledSince, uint64: UInt64(max(0, since))) }
        if let last = status.lastUsed { message.append(.lastUsed, uint64: UInt64(max(0, last))) }
        message.append(.recoveryCodesLeft, uint32: UInt32(clamping: status.recoveryCodesLeft))
        message.append(.failures, uint32: UInt32(clamping: status.failures))
        if let until = status.lockedUntil { message.append(.lockedUntil, uint64: UInt64(max(0, until))) }
        message.append(.driftSteps, int64: status.driftSteps)
        if let kind = status.kind { appendText(&message, .otpKind, kind) }
    }
}

/// A management answer built inside the unit of work, with what the audit line needs.
struct WireMessageOutcome: @unchecked Sendable {
    var answer: WireMessage
    var reason: AuditReason
    var lockout: LockoutEvent?

    static func codes(_ outcome: ManagementOutcome<[String]>) -> WireMessageOutcome {
        var answer = WireMessage(status: outcome.status)
        for code in outcome.value ?? [] { RequestProcessor.appendText(&answer, .recoveryCode, code) }
        return WireMessageOutcome(answer: answer, reason: outcome.reason, lockout: outcome.lockoutStarted)
    }

    static func plain(_ outcome: ManagementOutcome<Bool>) -> WireMessageOutcome {
        WireMessageOutcome(answer: WireMessage(status: outcome.status), reason: outcome.reason, lockout: outcome.lockoutStarted)
    }
}
