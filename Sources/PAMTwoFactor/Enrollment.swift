import CPAMShim

// The account-management and credentials phases: enrollment at login (enroll_at_login) and the
// count of enforcement's grace logins. Why the first factor has always succeeded before an
// enrollment is offered: applications call pam_acct_mgmt only after pam_authenticate returned
// PAM_SUCCESS for the whole auth stack (sshd, sudo, login, su all do), and pam_setcred only after
// both. In `auth` this module never offers enrollment: for an account that must enroll it answers
// PAM_IGNORE, so the rest of the stack (the password) alone decides whether the account phase is
// reached, and a stack in which nothing else can succeed (key-and-code) refuses.

/// pam_sm_acct_mgmt's work (the C shim calls this).
@_cdecl("twofactor_account")
public func twofactorAccount(_ pamh: OpaquePointer?, _ flags: Int32, _ argc: Int32,
                             _ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    guard let pamh else { return PAM_SYSTEM_ERR }
    let options = Options(argc: argc, argv: argv) { argument, problem in
        log(pamh, LOG_ERR, Options.complaint(argument, problem))
    }
    var session = Authentication(pamh: pamh, options: options)
    return session.accountManagement()
}

/// pam_sm_setcred(PAM_ESTABLISH_CRED)'s work: the login has succeeded.
@_cdecl("twofactor_credentials")
public func twofactorCredentials(_ pamh: OpaquePointer?, _ flags: Int32, _ argc: Int32,
                                 _ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    guard let pamh else { return PAM_SYSTEM_ERR }
    let options = Options(argc: argc, argv: argv) { _, _ in }  // complained about in auth already
    var session = Authentication(pamh: pamh, options: options)
    return session.establishCredentials()
}

extension Authentication {
    static let enrollPrompt: StaticString = "Code from the app: \0"
    static let enrollAttempts = 3
    static let continuePrompt: StaticString = "Press Enter once the recovery codes are saved: \0"
    static var credentialsMark: UnsafePointer<CChar> { Options.cString("twofactor_credentials_established\0") }

    /// Without enroll_at_login there is nothing to do here. With it, an account the daemon
    /// requires but that has not enrolled enrolls now, or the login is refused.
    mutating func accountManagement() -> Int32 {
        guard options.enrollAtLogin else { return PAM_IGNORE }
        let canonical: UnsafeMutablePointer<CChar>
        switch resolveUser(reportUnknown: false) {
        case .user(let found): canonical = found
        case .finished: return PAM_IGNORE  // pam_unix's account phase judges unknown users
        }
        defer { free(canonical) }
        userPointer = UnsafePointer(canonical)
        let user = cStringBytes(UnsafePointer(canonical))
        let answer: WireMessage
        switch ask(.check, capacity: Requests.checkCapacity, { (request) throws(WireError) in
            try Requests.check(user: user, service: contextItem(PAM_SERVICE), remoteHost: contextItem(PAM_RHOST),
                               tty: contextItem(PAM_TTY), phase: .accountManagement, into: &request)
        }) {
        case .answer(let found): answer = found
        case .finished(let status): return status == PAM_IGNORE ? PAM_IGNORE : PAM_PERM_DENIED
        }
        guard answer.status == .notEnrolled, answer.bool(.required) == true else { return PAM_IGNORE }
        return enroll(user)
    }

    /// Counts a grace login (the daemon does, for `check` in this phase) and, with
    /// enroll_at_login, refuses the credentials of an account that still must enroll: the
    /// enrollment was skipped (no `account ... pam_twofactor.so enroll_at_login` line in the
    /// stack), and auth let it through only for that. libpam counts this refusal only where
    /// pam_authenticate ran on another handle (sshd's keyboard-interactive); on the same handle
    /// it applies the action auth's PAM_IGNORE chose, "ignore", so the log line is what is left
    /// (the doctor reports the missing line). A daemon that does not answer changes nothing
    /// here: auth has judged the login already.
    mutating func establishCredentials() -> Int32 {
        // Once per PAM handle: an application may establish credentials more than once per login.
        var seen: UnsafeRawPointer? = nil
        if pam_get_data(pamh, Self.credentialsMark, &seen) == PAM_SUCCESS, seen != nil { return PAM_SUCCESS }
        _ = pam_set_data(pamh, Self.credentialsMark, UnsafeMutableRawPointer(mutating: Options.cString(Self.enrollPrompt)), nil)
        let canonical: UnsafeMutablePointer<CChar>
        switch resolveUser(reportUnknown: false) {
        case .user(let found): canonical = found
        case .finished: return PAM_SUCCESS
        }
        defer { free(canonical) }
        userPointer = UnsafePointer(canonical)
        let user = cStringBytes(UnsafePointer(canonical))
        guard let answer = quietly(capacity: Requests.checkCapacity, { (request) throws(WireError) in
            try Requests.check(user: user, service: contextItem(PAM_SERVICE), remoteHost: contextItem(PAM_RHOST),
                               tty: contextItem(PAM_TTY), phase: .credentials, into: &request)
        }) else { return PAM_SUCCESS }
        if options.enrollAtLogin && answer.status == .notEnrolled && answer.bool(.required) == true {
            log(pamh, LOG_ERR, "user \(userText) must enroll but the account phase did not run: add "
                + "`account required pam_twofactor.so enroll_at_login` to the stack; refusing")
            tell(PAM_ERROR_MSG, Self.requiredMessage)
            return PAM_CRED_ERR
        }
        return PAM_SUCCESS
    }

    /// Enrollment inside the login: the key (and otpauth link) as PAM text, a code from the app,
    /// the recovery codes. Anything short of a confirmed code (a wrong code three times, a
    /// dropped conversation, a daemon error) cancels the pending enrollment and refuses: nothing
    /// is enabled until the daemon has confirmed a code.
    func enroll(_ user: UnsafeBufferPointer<UInt8>) -> Int32 {
        log(pamh, LOG_NOTICE, "user \(userText) must enroll; enrolling at login")
        let begun: WireMessage
        switch ask(.enrollBegin, capacity: Requests.verifyCapacity, { (request) throws(WireError) in
            try Requests.enrollment(.enrollBegin, user: user, into: &request)
        }) {
        case .answer(let found): begun = found
        case .finished: return PAM_PERM_DENIED
        }
        guard begun.status == .ok, let secret = begun.bytes(.secret), let uri = begun.bytes(.uri) else {
            log(pamh, LOG_ERR, "user \(userText): enrollBegin answered status \(begun.code)")
            tell(PAM_ERROR_MSG, "Two-factor authentication could not be set up now; try again later.")
            return PAM_PERM_DENIED
        }
        var shown = "Two-factor authentication is required for this account. Set it up now to continue.\n"
        if let drawing = begun.bytes(.qrText), Self.isQRDrawing(drawing) {
            shown += "Scan this QR code with your authenticator app (Microsoft Authenticator, Google Authenticator, ...):\n\n"
                + String(decoding: drawing, as: UTF8.self) + "\n\nor add this key by hand:\n\n"
        } else {
            shown += "Add this key to your authenticator app (Microsoft Authenticator, Google Authenticator, ...):\n\n"
        }
        tell(PAM_TEXT_INFO, shown + "    \(Self.grouped(secret))\n\nor open this otpauth link on the phone:\n\(printable(uri, limit: 512))")
        for _ in 0..<Self.enrollAttempts {
            var response: UnsafeMutablePointer<CChar>? = nil
            let status = twofactor_converse(pamh, PAM_PROMPT_ECHO_ON, Options.cString(Self.enrollPrompt), &response)
            defer { twofactor_free_secret(response) }
            guard status == PAM_SUCCESS, let response else {
                log(pamh, LOG_NOTICE, "user \(userText): the conversation ended during enrollment; nothing enabled")
                cancelEnrollment(user)
                return PAM_PERM_DENIED
            }
            let code = cStringBytes(UnsafePointer(response))
            guard CodeShape.isPlausibleCode(code) else {
                tell(PAM_ERROR_MSG, "That is not a code from the app; enter the digits it shows now.")
                continue
            }
            switch ask(.enrollConfirm, capacity: Requests.verifyCapacity, { (request) throws(WireError) in
                try Requests.enrollment(.enrollConfirm, user: user, code: code, into: &request)
            }) {
            case .finished:
                cancelEnrollment(user)
                return PAM_PERM_DENIED
            case .answer(let confirmed) where confirmed.status == .ok:
                log(pamh, LOG_NOTICE, "user \(userText) enrolled at login")
                var text = "Two-factor authentication is on. Your recovery codes (each works once instead of a code "
                    + "if the phone is lost; keep them somewhere safe):\n"
                for code in confirmed.allBytes(.recoveryCode) { text += "\n    " + printable(code, limit: 64) }
                tell(PAM_TEXT_INFO, text)
                // A prompt makes every client show the text now (sshd sends PAM text with the
                // next prompt; after the last one it would only reach interactive sessions). Its
                // answer does not matter: the enrollment is confirmed.
                var enter: UnsafeMutablePointer<CChar>? = nil
                _ = twofactor_converse(pamh, PAM_PROMPT_ECHO_ON, Options.cString(Self.continuePrompt), &enter)
                twofactor_free_secret(enter)
                return PAM_SUCCESS
            case .answer(let confirmed) where confirmed.status == .wrongCode:
                tell(PAM_ERROR_MSG, "That code is not right; enter the code the app shows now.")
            case .answer(let confirmed):
                log(pamh, LOG_ERR, "user \(userText): enrollConfirm answered status \(confirmed.code)")
                cancelEnrollment(user)
                tell(PAM_ERROR_MSG, "Two-factor authentication could not be set up now; try again later.")
                return PAM_PERM_DENIED
            }
        }
        cancelEnrollment(user)
        tell(PAM_ERROR_MSG, "Two-factor authentication was not set up, so the login is refused. Log in again to retry.")
        return PAM_PERM_DENIED
    }

    /// Drops the pending enrollment (it was never enabled; this only tidies up).
    func cancelEnrollment(_ user: UnsafeBufferPointer<UInt8>) {
        _ = quietly(capacity: Requests.verifyCapacity) { (request) throws(WireError) in
            try Requests.enrollment(.enrollCancel, user: user, into: &request)
        }
    }

    /// Only what a drawing is made of (space, newline, ▀ ▄ █ in UTF-8) is shown unfiltered.
    static func isQRDrawing(_ bytes: [UInt8]) -> Bool {
        bytes.count <= 16_384 && bytes.allSatisfy { $0 == 0x20 || $0 == 0x0a || $0 == 0xe2 || $0 == 0x96 || $0 == 0x80 || $0 == 0x84 || $0 == 0x88 }
    }

    /// "ABCD EFGH ..." for reading off the screen.
    static func grouped(_ secret: [UInt8]) -> String {
        var bytes: [UInt8] = []
        for (index, byte) in secret.enumerated() {
            if index > 0 && index % 4 == 0 { bytes.append(UInt8(ascii: " ")) }
            bytes.append(byte)
        }
        return printable(bytes, limit: 256)
    }
}
