import CPAMShim

// The flow of one pam_sm_authenticate: who is logging in, does the account use 2FA, get a code,
// have the daemon judge it. What each outcome returns and says is in Outcomes.swift; getting
// the code in CodeSource.swift; the name lookup in PasswdLookup.swift; log lines in Logging.swift.

/// pam_sm_authenticate's work (the C shim calls this). Asks twofactord whether the account has
/// two-factor authentication (`check`), and if so gets a code from the person and has the daemon
/// judge it (`verify`). See docs/pam_twofactor.8 for the options and what each outcome returns.
@_cdecl("twofactor_authenticate")
public func twofactorAuthenticate(_ pamh: OpaquePointer?, _ flags: Int32, _ argc: Int32,
                                  _ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    guard let pamh else { return PAM_SYSTEM_ERR }
    // `flags` is not consulted: PAM_SILENT is deliberately not honoured (see `tell`), and
    // PAM_DISALLOW_NULL_AUTHTOK does not apply to a second factor.
    let options = Options(argc: argc, argv: argv) { argument, problem in
        log(pamh, LOG_ERR, Options.complaint(argument, problem))
    }
    var session = Authentication(pamh: pamh, options: options)
    return session.run()
}

struct Authentication {
    let pamh: OpaquePointer
    let options: Options
    /// The passwd name, once known.
    var userPointer: UnsafePointer<CChar>? = nil

    enum ResolvedUser {
        /// The passwd name (malloc'd: the caller frees it).
        case user(UnsafeMutablePointer<CChar>)
        case finished(Int32)
    }

    /// PAM_USER resolved to its passwd name. A name without a passwd entry is reported to the
    /// daemon when `reportUnknown` (authentication), for its audit log.
    func resolveUser(reportUnknown: Bool) -> ResolvedUser {
        var typedUser: UnsafePointer<CChar>? = nil
        let userStatus = pam_get_user(pamh, &typedUser, nil)
        guard userStatus == PAM_SUCCESS else {
            debug("could not get the user name (PAM status \(userStatus))")
            return .finished(userStatus)
        }
        guard let typedUser else { return .finished(PAM_USER_UNKNOWN) }
        // The daemon knows accounts by their passwd name. PAM_USER is what the client typed,
        // which NSS may resolve case-insensitively or from an alias (SSSD, winbind): "ALICE"
        // must not be a different, unenrolled account than "alice".
        guard let canonical = passwdName(typedUser) else {
            log(pamh, LOG_NOTICE, "no such user: \(printable(cStringBytes(typedUser), limit: 64))")
            if reportUnknown { reportUnknownUser(cStringBytes(typedUser)) }
            return .finished(PAM_USER_UNKNOWN)
        }
        let length = strlen(canonical)
        // The daemon's limit too: a longer name could never be enrolled.
        guard length > 0, length <= Product.maxUserNameLength else {
            log(pamh, LOG_ERR, "refusing a user name of \(length) bytes")
            free(canonical)
            return .finished(PAM_USER_UNKNOWN)
        }
        return .user(canonical)
    }

    mutating func run() -> Int32 {
        // One connection to twofactord, kept from `check` to `verify` (DaemonLink), or -1.
        var connection: Int32 = -1
        defer { if connection >= 0 { close(connection) } }
        let canonical: UnsafeMutablePointer<CChar>
        switch resolveUser(reportUnknown: true) {
        case .user(let found): canonical = found
        case .finished(let status): return status
        }
        defer { free(canonical) }
        userPointer = UnsafePointer(canonical)
        let user = cStringBytes(UnsafePointer(canonical))
        // 1. Does this login need a code? The daemon's login policy decides.
        let checkAnswer: WireMessage
        switch ask(.check, capacity: Requests.checkCapacity, connection: &connection, { (request) throws(WireError) in
            try Requests.check(user: user, service: contextItem(PAM_SERVICE), remoteHost: contextItem(PAM_RHOST),
                               tty: contextItem(PAM_TTY), into: &request)
        }) {
        case .answer(let answer): checkAnswer = answer
        case .finished(let status): return status
        }
        switch checkAnswer.status {
        case .enrolled:
            debug("user \(userText) has two-factor authentication")
        case .notEnrolled:
            return notEnrolled(checkAnswer)
        case .exempt:
            return exempt(checkAnswer)
        default:
            return unexpected(checkAnswer, during: .check)
        }

        // 2. Get the code (and, with forward_pass, the password in front of it).
        var code = SecretBytes(capacity: CodeShape.maxLength)
        let obtained = obtainCode(into: &code)
        if obtained != PAM_SUCCESS { return obtained }
        guard CodeShape.isPlausibleCode(code.bytes) else {
            debug("user \(userText): the answer is not shaped like a code; not sent to the daemon")
            tell(PAM_ERROR_MSG, Product.incorrectCodeMessage)
            return PAM_AUTH_ERR
        }

        // 3. Have the daemon judge it.
        switch ask(.verify, capacity: Requests.verifyCapacity, connection: &connection, { (request) throws(WireError) in
            try Requests.verify(user: user, code: code.bytes, service: contextItem(PAM_SERVICE),
                                remoteHost: contextItem(PAM_RHOST), tty: contextItem(PAM_TTY), into: &request)
        }) {
        case .answer(let answer): return judge(answer)
        case .finished(let status): return status
        }
    }

    enum Exchange {
        case answer(WireMessage)
        /// No answer to go on: the authentication ends with this PAM status.
        case finished(Int32)
    }

    /// One request on a connection of its own (see the next one).
    func ask(_ operation: Operation, capacity: Int,
             _ encode: (inout SecretBytes) throws(WireError) -> Void) -> Exchange {
        var connection: Int32 = -1
        defer { if connection >= 0 { close(connection) } }
        return ask(operation, capacity: capacity, connection: &connection, encode)
    }

    /// One request, encoded by `encode` into a fresh buffer of `capacity` (zeroed when done),
    /// to the daemon at the configured socket (on `connection` when still open), within the
    /// configured timeout.
    func ask(_ operation: Operation, capacity: Int, connection: inout Int32,
             _ encode: (inout SecretBytes) throws(WireError) -> Void) -> Exchange {
        var request = SecretBytes(capacity: capacity)
        do {
            try encode(&request)
        } catch {
            log(pamh, LOG_ERR, "could not encode the \(operation == .check ? "check" : "verify") request")
            return .finished(PAM_SYSTEM_ERR)
        }
        do {
            return .answer(try DaemonLink.exchange(socketPath: options.socketPath, daemonUser: options.daemonUser,
                                                   frame: request.bytes, timeoutSeconds: options.timeoutSeconds,
                                                   connection: &connection))
        } catch {
            return .finished(unavailable(error, during: operation))
        }
    }

    /// A name without a passwd entry is still reported to the daemon (a `check` whose answer is
    /// not used), so its audit log has the attempt with its remote host for fail2ban. Only a
    /// name the daemon would accept is sent; the login is refused whatever happens.
    func reportUnknownUser(_ typed: UnsafeBufferPointer<UInt8>) {
        guard Requests.isSendableContext(typed), typed.count <= Product.maxUserNameLength else { return }
        _ = quietly(capacity: Requests.checkCapacity) { (request) throws(WireError) in
            try Requests.check(user: typed, service: contextItem(PAM_SERVICE), remoteHost: contextItem(PAM_RHOST),
                               tty: contextItem(PAM_TTY), phase: .unknownUser, into: &request)
        }
    }

    /// One request whose failure changes nothing (reports, counting): no message to the
    /// person, a debug line at most. nil when there is no answer.
    func quietly(capacity: Int, _ encode: (inout SecretBytes) throws(WireError) -> Void) -> WireMessage? {
        var request = SecretBytes(capacity: capacity)
        do {
            try encode(&request)
        } catch {
            return nil
        }
        var connection: Int32 = -1
        defer { if connection >= 0 { close(connection) } }
        do {
            return try DaemonLink.exchange(socketPath: options.socketPath, daemonUser: options.daemonUser,
                                           frame: request.bytes, timeoutSeconds: options.timeoutSeconds,
                                           connection: &connection)
        } catch {
            debug("a report to twofactord went unanswered")
            return nil
        }
    }

    /// A PAM item (service, remote host, tty) as context for the audit log, nil when unset.
    /// Requests leaves out what it must not send; this only says so in the debug log.
    func contextItem(_ item: Int32) -> UnsafeBufferPointer<UInt8>? {
        var value: UnsafeRawPointer? = nil
        guard pam_get_item(pamh, item, &value) == PAM_SUCCESS, let value else { return nil }
        let bytes = cStringBytes(value.assumingMemoryBound(to: CChar.self))
        if !Requests.isSendableContext(bytes) {
            debug("leaving out PAM item \(item): empty, long or not printable ASCII")
        }
        return bytes
    }
}
