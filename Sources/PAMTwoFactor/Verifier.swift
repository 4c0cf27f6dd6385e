import CPAMShim

/// pam_sm_authenticate's work (the C shim calls this). Asks twofactord whether the account has
/// two-factor authentication (`check`), and if so gets a code from the person and has the daemon
/// judge it (`verify`). See docs/pam_twofactor.8 for the options and what each outcome returns.
@_cdecl("twofactor_authenticate")
public func twofactorAuthenticate(_ pamh: OpaquePointer?, _ flags: Int32, _ argc: Int32,
                                  _ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    guard let pamh else { return PAM_SYSTEM_ERR }
    // `flags` is not consulted: PAM_SILENT is deliberately not honoured (see `tell`), and
    // PAM_DISALLOW_NULL_AUTHTOK does not apply to a second factor.
    var session = Authentication(pamh: pamh, options: Options(argc: argc, argv: argv, pamh: pamh))
    return session.run()
}

/// Longest code the daemon's classifier considers (CodeInput.maxLength in TwoFactorCore, which
/// the Embedded module cannot import). Longer answers are rejected here, before any encoding.
let maxCodeLength = 64
/// Longest user, service, remote host or tty value sent; keeps every request far below the
/// daemon's 8 KiB limit. A longer user name fails; a longer optional field is left out.
let maxFieldLength = 1024

let incorrectCodeMessage = "Incorrect two-factor authentication code"

struct Authentication {
    let pamh: OpaquePointer
    let options: Options
    var userPointer: UnsafePointer<CChar>? = nil

    /// The user name for log lines, built only when something is logged.
    var userText: String { userPointer.map { printable($0, limit: 64) } ?? "(unknown)" }


    mutating func run() -> Int32 {
        var typedUser: UnsafePointer<CChar>? = nil
        let userStatus = pam_get_user(pamh, &typedUser, nil)
        guard userStatus == PAM_SUCCESS else {
            debug("could not get the user name (PAM status \(userStatus))")
            return userStatus
        }
        guard let typedUser else { return PAM_USER_UNKNOWN }
        // The daemon knows accounts by their passwd name. PAM_USER is what the client typed,
        // which NSS may resolve case-insensitively or from an alias (SSSD, winbind): "ALICE"
        // must not be a different, unenrolled account than "alice".
        guard let canonical = passwdName(typedUser) else {
            log(pamh, LOG_NOTICE, "no such user: \(printable(typedUser, limit: 64))")
            return PAM_USER_UNKNOWN
        }
        defer { free(canonical) }
        userPointer = UnsafePointer(canonical)
        guard let userPointer else { return PAM_USER_UNKNOWN }
        let user = cStringBytes(userPointer)
        guard user.count > 0, user.count <= maxFieldLength else {
            log(pamh, LOG_ERR, "refusing a user name of \(user.count) bytes")
            return PAM_USER_UNKNOWN
        }
        // 1. Does this account use 2FA?
        var check = SecretBytes(capacity: 16 + maxFieldLength)
        guard encodeRequest(.check, into: &check, user: user, code: nil) else {
            log(pamh, LOG_ERR, "could not encode the check request")
            return PAM_SYSTEM_ERR
        }
        let checkAnswer: WireMessage
        do {
            checkAnswer = try ask(check)
        } catch {
            return unavailable(error, during: .check)
        }
        switch checkAnswer.status {
        case .enrolled:
            debug("user \(userText) has two-factor authentication")
        case .notEnrolled:
            return notEnrolled()
        default:
            return unexpected(checkAnswer, during: .check)
        }

        // 2. Get the code (and, with forward_pass, the password in front of it).
        var code = SecretBytes(capacity: maxCodeLength)
        let obtained = obtainCode(into: &code)
        if obtained != PAM_SUCCESS { return obtained }
        guard isPlausibleCode(code.bytes) else {
            debug("user \(userText): the answer is not shaped like a code; not sent to the daemon")
            tell(PAM_ERROR_MSG, incorrectCodeMessage)
            return PAM_AUTH_ERR
        }

        // 3. Have the daemon judge it.
        var request = SecretBytes(capacity: 64 + maxCodeLength + 4 * maxFieldLength)
        guard encodeRequest(.verify, into: &request, user: user, code: code.bytes) else {
            log(pamh, LOG_ERR, "could not encode the verify request")
            return PAM_SYSTEM_ERR
        }
        let answer: WireMessage
        do {
            answer = try ask(request)
        } catch {
            return unavailable(error, during: .verify)
        }
        return judge(answer)
    }

    /// One request to the daemon at the configured socket, within the configured timeout.
    func ask(_ request: borrowing SecretBytes) throws(LinkFailure) -> WireMessage {
        try DaemonLink.exchange(socketPath: options.socketPath, socketPathLength: options.socketPathLength,
                                daemonUser: options.daemonUser, frame: request.bytes,
                                timeoutSeconds: options.timeoutSeconds)
    }

    // MARK: Outcomes

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
            if let offset = answer.int64(.clockOffsetMicros) {
                let seconds = offset.magnitude / 1_000_000
                tell(PAM_ERROR_MSG, "\(incorrectCodeMessage)\nThe server's clock may be wrong (off by about \(seconds) seconds); please tell the administrator.")
            } else {
                tell(PAM_ERROR_MSG, incorrectCodeMessage)
            }
            return PAM_AUTH_ERR
        case .lockedOut:
            debug("user \(userText): locked out")
            let minutes = minutesUntil(answer.uint64(.lockedUntil))
            tell(PAM_ERROR_MSG, "Too many incorrect codes; try again in \(minutes) minute\(minutes == 1 ? "" : "s")")
            return PAM_AUTH_ERR
        case .notEnrolled:
            // 2FA was switched off between check and verify.
            return notEnrolled()
        default:
            return unexpected(answer, during: .verify)
        }
    }

    func notEnrolled() -> Int32 {
        if options.require {
            log(pamh, LOG_NOTICE, "user \(userText) has no two-factor authentication set up and it is required")
            tell(PAM_ERROR_MSG, "Two-factor authentication is required for this account but is not set up. Set it up with `twofactor enable` from an existing session, or ask the administrator.")
            return PAM_AUTH_ERR
        }
        debug("user \(userText) has no two-factor authentication; ignoring")
        return PAM_IGNORE
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

    // MARK: Getting the code

    /// Fills `code`; with forward_pass also puts the password into PAM_AUTHTOK. Returns a PAM
    /// status: anything but PAM_SUCCESS ends the authentication with it.
    mutating func obtainCode(into code: inout SecretBytes) -> Int32 {
        if options.answerSource != .prompt {
            var token: UnsafeRawPointer? = nil
            if pam_get_item(pamh, PAM_AUTHTOK, &token) == PAM_SUCCESS, let token {
                let answer = cStringBytes(token.assumingMemoryBound(to: CChar.self))
                let usable = options.answerSource == .useFirstPass
                    || (options.forwardPass ? codeSplit(answer) != nil : looksLikeCode(answer, digits: options.digits))
                if usable {
                    debug("taking the code from PAM_AUTHTOK")
                    return take(answer, into: &code)
                }
            } else if options.answerSource == .useFirstPass {
                log(pamh, LOG_ERR, "use_first_pass: no PAM_AUTHTOK from an earlier module")
                return PAM_AUTH_ERR
            }
        }
        var response: UnsafeMutablePointer<CChar>? = nil
        let status = twofactor_converse(pamh, PAM_PROMPT_ECHO_OFF, options.effectivePrompt, &response)
        defer { twofactor_free_secret(response) }
        guard status == PAM_SUCCESS else {
            log(pamh, LOG_ERR, "the conversation failed (PAM status \(status))")
            return PAM_CONV_ERR
        }
        guard let response else { return PAM_SUCCESS }  // no answer: an empty code
        return take(cStringBytes(response), into: &code)
    }

    /// Copies the code out of an answer. With forward_pass the answer is password then code: the
    /// code is cut off the end and the password replaces PAM_AUTHTOK for the next module.
    func take(_ answer: UnsafeBufferPointer<UInt8>, into code: inout SecretBytes) -> Int32 {
        guard options.forwardPass else {
            // Longer than any code: left empty, so it is refused like any other non-code.
            if answer.count <= maxCodeLength, let base = answer.baseAddress {
                _ = code.append(base, count: answer.count)
            }
            return PAM_SUCCESS
        }
        guard let split = codeSplit(answer), let base = answer.baseAddress else {
            debug("forward_pass: no code at the end of the answer")
            return PAM_SUCCESS  // empty code: rejected as incorrect
        }
        guard code.append(base + split, count: answer.count - split) else { return PAM_SUCCESS }
        var password = SecretBytes(capacity: split + 1)
        guard password.append(base, count: split), password.append(0) else { return PAM_SYSTEM_ERR }
        let status = pam_set_item(pamh, PAM_AUTHTOK, UnsafeRawPointer(password.base))
        if status != PAM_SUCCESS {
            log(pamh, LOG_ERR, "forward_pass: could not set PAM_AUTHTOK (PAM status \(status))")
            return status
        }
        return PAM_SUCCESS
    }

    /// forward_pass: where the code starts in password+code. The code is the last `digits`
    /// characters when they are all digits, else a recovery code in its printed form
    /// XXXX-XXXX-XXXX at the very end; nil when the answer ends in neither.
    func codeSplit(_ answer: UnsafeBufferPointer<UInt8>) -> Int? {
        let digits = options.digits
        if answer.count >= digits {
            var allDigits = true
            for index in (answer.count - digits)..<answer.count where !isDigit(answer[index]) { allDigits = false }
            if allDigits { return answer.count - digits }
        }
        let printed = 14  // 12 characters in 3 groups of 4
        if answer.count >= printed {
            let start = answer.count - printed
            var matches = true
            for offset in 0..<printed {
                let byte = answer[start + offset]
                let ok = (offset == 4 || offset == 9) ? byte == UInt8(ascii: "-") : isRecoveryCharacter(byte)
                if !ok { matches = false }
            }
            if matches { return start }
        }
        return nil
    }

    // MARK: Requests

    /// check (user) or verify (user, code, service, remoteHost, tty) in the codec's layout,
    /// written straight into one fixed buffer: no reallocation leaves a copy of the code behind,
    /// and the hot path allocates nothing else.
    func encodeRequest(_ operation: Operation, into request: inout SecretBytes, user: UnsafeBufferPointer<UInt8>,
                       code: UnsafeBufferPointer<UInt8>?) -> Bool {
        guard request.append(0), request.append(0), request.append(0), request.append(0),  // length, patched below
              request.append(WireProtocol.version), request.append(operation.rawValue),
              appendField(&request, .user, user)
        else { return false }
        if let code {
            guard appendField(&request, .code, code),
                  appendItem(&request, PAM_SERVICE, .service),
                  appendItem(&request, PAM_RHOST, .remoteHost),
                  appendItem(&request, PAM_TTY, .tty) else { return false }
        }
        let payloadLength = request.count - WireProtocol.headerLength
        guard payloadLength <= WireProtocol.maxRequestLength else { return false }
        request.base[0] = UInt8(truncatingIfNeeded: payloadLength >> 24)
        request.base[1] = UInt8(truncatingIfNeeded: payloadLength >> 16)
        request.base[2] = UInt8(truncatingIfNeeded: payloadLength >> 8)
        request.base[3] = UInt8(truncatingIfNeeded: payloadLength)
        return true
    }

    /// A PAM item as optional context for the audit log: left out rather than sent when unset,
    /// empty, long or not printable ASCII (the daemon could refuse the request for it).
    func appendItem(_ request: inout SecretBytes, _ item: Int32, _ tag: FieldTag) -> Bool {
        var value: UnsafeRawPointer? = nil
        guard pam_get_item(pamh, item, &value) == PAM_SUCCESS, let value else { return true }
        let bytes = cStringBytes(value.assumingMemoryBound(to: CChar.self))
        guard bytes.count > 0, bytes.count <= maxFieldLength, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else {
            debug("leaving out PAM item \(item): empty, long or not printable ASCII")
            return true
        }
        return appendField(&request, tag, bytes)
    }

    /// One field as the codec lays it out: tag, u16 big-endian length, value.
    func appendField(_ request: inout SecretBytes, _ tag: FieldTag, _ value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard value.count <= WireProtocol.maxFieldLength else { return false }
        guard request.append(tag.rawValue),
              request.append(UInt8(truncatingIfNeeded: value.count >> 8)),
              request.append(UInt8(truncatingIfNeeded: value.count)) else { return false }
        guard let base = value.baseAddress else { return value.count == 0 }
        return request.append(base, count: value.count)
    }

    // MARK: Talking

    /// A message to the person. Shown even under PAM_SILENT, which sudo 1.9 always passes: a
    /// person refused a code, locked out or running out of recovery codes must learn why.
    func tell(_ style: Int32, _ text: String) {
        text.withCString { _ = twofactor_converse(pamh, style, $0, nil) }
    }

    func debug(_ text: @autoclosure () -> String) {
        if options.debug { log(pamh, LOG_DEBUG, text()) }
    }
}

/// The passwd name NSS gives `typed` (a malloc'd copy for the caller to free), or nil when there
/// is no such user. The name is NSS's bytes as they are, never a Swift String: canonically
/// equivalent spellings ("jose" + U+0301 and "jos" + U+00E9) are different accounts.
func passwdName(_ typed: UnsafePointer<CChar>) -> UnsafeMutablePointer<CChar>? {
    withPasswdEntry(typed) { entry in entry.pw_name.flatMap { strdup($0) } }
}

/// The uid of the account named exactly `name`, or nil when there is none.
func userID(_ name: UnsafePointer<CChar>) -> uid_t? {
    withPasswdEntry(name) { entry in entry.pw_uid }
}

/// `body` applied to the passwd entry for `name`, or nil when there is none (or NSS fails).
/// getpwnam_r rather than pam_modutil_getpwnam, which keeps its result as PAM data on the
/// handle and needs the handle to be inside a pam_authenticate call.
func withPasswdEntry<T>(_ name: UnsafePointer<CChar>, _ body: (passwd) -> T?) -> T? {
    var size = 4096
    while size <= 1 << 20 {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        let status = getpwnam_r(name, &entry, buffer, size, &result)
        if status == ERANGE {
            size *= 4
            continue
        }
        guard status == 0, result != nil else { return nil }
        return body(entry)
    }
    return nil
}

/// Obviously not a code: empty, longer than any code, or anything but printable ASCII (control
/// characters, non-UTF-8 or non-ASCII bytes). Such answers are refused here with the same
/// message; the daemon judges everything else.
func isPlausibleCode(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard bytes.count > 0, bytes.count <= maxCodeLength else { return false }
    return bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
}

/// try_first_pass: whether PAM_AUTHTOK is a code rather than an earlier module's password:
/// `digits` digits, or 12 recovery-code characters, ignoring spaces and dashes.
func looksLikeCode(_ bytes: UnsafeBufferPointer<UInt8>, digits: Int) -> Bool {
    var digitCount = 0
    var recoveryCount = 0
    for byte in bytes where byte != UInt8(ascii: " ") && byte != UInt8(ascii: "-") {
        if isDigit(byte) { digitCount += 1 }
        guard isRecoveryCharacter(byte) || isDigit(byte) else { return false }
        recoveryCount += 1
    }
    if digitCount == recoveryCount && digitCount == digits { return true }
    return recoveryCount == 12 && bytes.allSatisfy { $0 != UInt8(ascii: "0") && $0 != UInt8(ascii: "1") }
}

func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

/// The recovery-code alphabet (RecoveryCodes.alphabet: 2-9 and A-Z without I, L, O, U), either case.
func isRecoveryCharacter(_ byte: UInt8) -> Bool {
    if byte >= UInt8(ascii: "2") && byte <= UInt8(ascii: "9") { return true }
    let upper = byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte
    guard upper >= UInt8(ascii: "A") && upper <= UInt8(ascii: "Z") else { return false }
    return upper != UInt8(ascii: "I") && upper != UInt8(ascii: "L") && upper != UInt8(ascii: "O") && upper != UInt8(ascii: "U")
}
