import CPAMShim

/// What to do when twofactord cannot give an answer.
enum FailMode {
    /// Refuse (PAM_AUTHINFO_UNAVAIL): the default, since 2FA must not vanish with the daemon.
    case secure
    /// Let the stack continue without 2FA (PAM_IGNORE), with a warning in syslog, but only when
    /// no daemon exists (Authentication.unavailable has the rule).
    case open
}

/// Where the answer comes from (google-authenticator-libpam's option names and meaning).
enum AnswerSource {
    /// Ask with our own prompt.
    case prompt
    /// Only PAM_AUTHTOK, set by an earlier module; never prompt.
    case useFirstPass
    /// PAM_AUTHTOK when it holds something shaped like a code; otherwise prompt.
    case tryFirstPass
}

/// The module's arguments from the PAM service file. Parsing never fails: an unknown option or a
/// bad value is logged at error level and the safer default is kept.
struct Options {
    static let defaultSocket: StaticString = "/run/twofactor/twofactord.sock\0"
    /// The account twofactord runs as (scripts/install creates it).
    static let defaultDaemonUser: StaticString = "twofactor\0"
    /// Longer than any real user name (useradd allows 32 bytes).
    static let maxDaemonUserLength = 256
    static let defaultPrompt: StaticString = "Two-factor authentication code (or recovery code): \0"
    static let defaultForwardPrompt: StaticString = "Password and two-factor code: \0"
    static let defaultTimeoutSeconds = 3
    static let maxTimeoutSeconds = 60
    /// PAM_MAX_MSG_SIZE is 512; keep well under it.
    static let maxPromptLength = 256

    /// NUL-terminated; points into argv (valid for the call) or at the default.
    var socketPath: UnsafePointer<CChar>
    var socketPathLength: Int
    /// Besides root, the only account whose process may answer on the socket (NUL-terminated;
    /// points into argv or at the default).
    var daemonUser: UnsafePointer<CChar>
    var timeoutSeconds = Options.defaultTimeoutSeconds
    var prompt: UnsafePointer<CChar>? = nil
    var require = false
    var failMode = FailMode.secure
    var debug = false
    var answerSource = AnswerSource.prompt
    var forwardPass = false
    /// Length of a TOTP code at the end of a password+code answer (forward_pass).
    var digits = 6

    init(argc: Int32, argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?, pamh: OpaquePointer?) {
        socketPath = Options.cString(Options.defaultSocket)
        socketPathLength = Options.defaultSocket.utf8CodeUnitCount - 1
        daemonUser = Options.cString(Options.defaultDaemonUser)
        guard let argv, argc > 0 else { return }
        var sawUseFirstPass = false
        var sawTryFirstPass = false
        for index in 0..<Int(argc) {
            guard let argument = argv[index] else { continue }
            if Options.equals(argument, "debug\0") {
                debug = true
            } else if Options.equals(argument, "require\0") {
                require = true
            } else if Options.equals(argument, "use_first_pass\0") {
                sawUseFirstPass = true
            } else if Options.equals(argument, "try_first_pass\0") {
                sawTryFirstPass = true
            } else if Options.equals(argument, "forward_pass\0") {
                forwardPass = true
            } else if let value = Options.value(argument, "socket=") {
                let length = strlen(value)
                // An absolute path that fits sockaddr_un (with its NUL).
                if length > 0, length < Int(TWOFACTOR_SUN_PATH_SIZE), value[0] == CChar(UInt8(ascii: "/")) {
                    socketPath = value
                    socketPathLength = length
                } else {
                    Options.complain(pamh, argument, "must be an absolute path shorter than \(Int(TWOFACTOR_SUN_PATH_SIZE)) bytes; using the default socket")
                }
            } else if let value = Options.value(argument, "daemon_user=") {
                let length = strlen(value)
                if length > 0, length <= Options.maxDaemonUserLength {
                    daemonUser = value
                } else {
                    daemonUser = Options.cString(Options.defaultDaemonUser)
                    Options.complain(pamh, argument, "must be a user name of 1 to \(Options.maxDaemonUserLength) bytes; using twofactor")
                }
            } else if let value = Options.value(argument, "timeout=") {
                if let seconds = Options.smallNumber(value), seconds >= 1, seconds <= Options.maxTimeoutSeconds {
                    timeoutSeconds = seconds
                } else {
                    timeoutSeconds = Options.defaultTimeoutSeconds
                    Options.complain(pamh, argument, "must be whole seconds from 1 to \(Options.maxTimeoutSeconds); using \(Options.defaultTimeoutSeconds)")
                }
            } else if let value = Options.value(argument, "prompt=") {
                let length = strlen(value)
                if length > 0, length <= Options.maxPromptLength {
                    prompt = value
                } else {
                    prompt = nil
                    Options.complain(pamh, argument, "must be 1 to \(Options.maxPromptLength) bytes; using the default prompt")
                }
            } else if let value = Options.value(argument, "failmode=") {
                if Options.equals(value, "secure\0") {
                    failMode = .secure
                } else if Options.equals(value, "open\0") {
                    failMode = .open
                } else {
                    failMode = .secure
                    Options.complain(pamh, argument, "must be secure or open; using secure")
                }
            } else if let value = Options.value(argument, "digits=") {
                if let count = Options.smallNumber(value), count >= 6, count <= 8 {
                    digits = count
                } else {
                    digits = 6
                    Options.complain(pamh, argument, "must be 6, 7 or 8; using 6")
                }
            } else {
                Options.complain(pamh, argument, "is not a known option; ignored")
            }
        }
        // use_first_pass is the stricter of the two when both are given.
        answerSource = sawUseFirstPass ? .useFirstPass : sawTryFirstPass ? .tryFirstPass : .prompt
    }

    var effectivePrompt: UnsafePointer<CChar> {
        if let prompt { return prompt }
        return Options.cString(forwardPass ? Options.defaultForwardPrompt : Options.defaultPrompt)
    }

    /// The text of a StaticString whose literal ends in "\0".
    static func cString(_ literal: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(literal.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// `literal` must end in "\0".
    static func equals(_ argument: UnsafePointer<CChar>, _ literal: StaticString) -> Bool {
        strcmp(argument, cString(literal)) == 0
    }

    /// The text after `name` (which includes the '=') when the argument starts with it.
    static func value(_ argument: UnsafePointer<CChar>, _ name: StaticString) -> UnsafePointer<CChar>? {
        let length = name.utf8CodeUnitCount
        guard strncmp(argument, cString(name), length) == 0 else { return nil }
        return argument + length
    }

    /// 1 to 4 ASCII digits, nothing else (so no overflow and no surprises like "3s" or "-1").
    static func smallNumber(_ text: UnsafePointer<CChar>) -> Int? {
        var result = 0
        var index = 0
        while text[index] != 0 {
            let byte = UInt8(bitPattern: text[index])
            guard index < 4, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            result = result * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
        }
        return index == 0 ? nil : result
    }

    static func complain(_ pamh: OpaquePointer?, _ argument: UnsafePointer<CChar>, _ problem: String) {
        log(pamh, LOG_ERR, "option \"\(printable(argument))\" \(problem)")
    }
}

/// Text from outside (an option, a user name) made safe for a log line: printable ASCII only,
/// at most `limit` bytes, so it can neither forge log lines nor flood them.
func printable(_ text: UnsafePointer<CChar>, limit: Int = 80) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(limit + 3)
    var index = 0
    while text[index] != 0 {
        if index == limit {
            out.append(UInt8(ascii: "."))
            out.append(UInt8(ascii: "."))
            out.append(UInt8(ascii: "."))
            break
        }
        let byte = UInt8(bitPattern: text[index])
        out.append(byte >= 0x20 && byte < 0x7f && byte != UInt8(ascii: "\"") ? byte : UInt8(ascii: "?"))
        index += 1
    }
    return String(decoding: out, as: UTF8.self)
}

func log(_ pamh: OpaquePointer?, _ priority: Int32, _ message: String) {
    message.withCString { twofactor_syslog(pamh, priority, $0) }
}
