import CPAMShim

// What each answer (or the lack of one) returns to PAM, and what the person is told.

extension Authentication {
    func judge(_ answer: WireMessage) -> Int32 {
        switch answer.status {
        case .accepted:
            if answer.uint8(.method) == VerificationMethod.recoveryCode.rawValue {
                debug("user \(userText): recovery code accepted")
                tellRecoveryCodesLeft(answer.uint32(.recoveryCodesLeft))
            } else {
                debug("user \(userText): code accepted")
            }
            return PAM_SUCCESS
        case .wrongCode, .codeReused:
            debug("user \(userText): code rejected (\(answer.status == .codeReused ? "reused" : "wrong"))")
            tell(PAM_ERROR_MSG, Product.incorrectCode(clockOffsetMicros: answer.int64(.clockOffsetMicros)))
            return PAM_AUTH_ERR
        case .lockedOut:
            debug("user \(userText): locked out")
            let minutes = minutesUntil(answer.uint64(.lockedUntil))
            tell(PAM_ERROR_MSG, "Too many incorrect codes; try again in \(minutes) minute\(minutes == 1 ? "" : "s")")
            return PAM_AUTH_ERR
        case .notEnrolled:
            // 2FA was switched off between check and verify.
            return notEnrolled(answer)
        default:
            return unexpected(answer, during: .verify)
        }
    }

    /// Not enrolled. Refused when the module's `require` or the daemon's login policy (the
    /// answer's `required`, with its message) says so; otherwise PAM_IGNORE, showing the policy's
    /// message (an enforcement deadline: what is left and what to run) when there is one.
    func notEnrolled(_ answer: WireMessage) -> Int32 {
        let message = answer.bytes(.message).map { printable($0, limit: 400) }
        if answer.bool(.required) == true && options.enrollAtLogin {
            // The first factor has not been judged yet: enrollment waits for the account phase,
            // which applications only reach after the whole auth stack succeeded.
            debug("user \(userText) must enroll; left to the account phase (enroll_at_login)")
            return PAM_IGNORE
        }
        if options.require || answer.bool(.required) == true {
            let why = options.require ? "the module's require" : "the login policy (\(ruleText(answer)))"
            log(pamh, LOG_NOTICE, "user \(userText) has no two-factor authentication set up and \(why) requires it")
            tell(PAM_ERROR_MSG, answer.bool(.required) == true ? (message ?? Self.requiredMessage) : Self.requiredMessage)
            return PAM_AUTH_ERR
        }
        if let message { tell(PAM_TEXT_INFO, message) }
        debug("user \(userText) has no two-factor authentication; ignoring")
        return PAM_IGNORE
    }

    static let requiredMessage = "Two-factor authentication is required for this account but is not set up. Set it up with `twofactor enable` from an existing session, or ask the administrator."

    /// The login policy exempts this login (a network or group). PAM_IGNORE, like an unenrolled
    /// account: the exemption removes the code, never the password, so a stack whose only other
    /// success would be this module still fails.
    func exempt(_ answer: WireMessage) -> Int32 {
        debug("user \(userText): no code asked (\(ruleText(answer)))")
        return PAM_IGNORE
    }

    func ruleText(_ answer: WireMessage) -> String {
        let rule = answer.bytes(.rule).map { printable($0, limit: 32) } ?? "?"
        guard let detail = answer.bytes(.ruleDetail) else { return rule }
        return rule + " " + printable(detail, limit: 64)
    }

    func unexpected(_ answer: WireMessage, during operation: Operation) -> Int32 {
        unavailable(.unusable("an unexpected answer", detail: " (status \(answer.code))"), during: operation)
    }

    /// The daemon gave no usable answer. The one place that decides what failmode=open lets
    /// through: only a daemon that does not exist, found on the first request (`check`). A
    /// daemon that is there but slow, flooded, closing or answering nonsense, or anything after
    /// `check` answered (the code is on its way), is refused in both modes: a local user can
    /// provoke those, and must not turn a wrong code into a password-only login.
    func unavailable(_ failure: LinkFailure, during operation: Operation) -> Int32 {
        let failOpen = options.failMode == .open && failure.kind == .noDaemon && operation == .check
        let consequence = failOpen
            ? "WARNING: letting user \(userText) continue without two-factor authentication (failmode=open)"
            : options.failMode == .secure
                ? "refusing user \(userText) (failmode=secure)"
                : "refusing user \(userText) (failmode=open covers only a missing daemon on the first request)"
        let path = printable(options.socketPath, limit: 120)
        let request = operation == .check ? "check" : "verify"
        let what = "twofactord at \(path) gave no usable answer to \(request): \(failure.what)"
        let rest = "\(failure.detail); \(consequence)"
        let priority = failOpen ? LOG_WARNING : LOG_ERR
        if failure.errnum != 0 {  // the system's reason right after what failed
            what.withCString { before in rest.withCString { twofactor_syslog_errno(pamh, priority, before, failure.errnum, $0) } }
        } else {
            log(pamh, priority, what + rest)
        }
        if failOpen { return PAM_IGNORE }
        tell(PAM_ERROR_MSG, "Two-factor authentication is unavailable right now; try again later.")
        return PAM_AUTHINFO_UNAVAIL
    }

    func tellRecoveryCodesLeft(_ left: UInt32?) {
        guard let left else {
            tell(PAM_TEXT_INFO, "Recovery code accepted.")
            return
        }
        var text = "Recovery code accepted; \(left) recovery code\(left == 1 ? "" : "s") left."
        if left <= 2 {
            text += "\nWARNING: generate new recovery codes with `twofactor recovery-codes` now."
        }
        tell(PAM_TEXT_INFO, text)
    }

    func minutesUntil(_ lockedUntil: UInt64?) -> UInt64 {
        guard let lockedUntil else { return 1 }
        let now = UInt64(time(nil))
        guard lockedUntil > now else { return 1 }
        let seconds = lockedUntil - now
        return seconds / 60 + (seconds % 60 == 0 ? 0 : 1)
    }

    /// A message to the person. Shown even under PAM_SILENT, which sudo 1.9 always passes: a
    /// person refused a code, locked out or running out of recovery codes must learn why.
    func tell(_ style: Int32, _ text: String) {
        text.withCString { _ = twofactor_converse(pamh, style, $0, nil) }
    }
}
