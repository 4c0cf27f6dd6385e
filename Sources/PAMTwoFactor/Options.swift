// The module's arguments from the PAM service file: parsing only, no logging, so the test build
// (Sources/PAMTwoFactorPure) compiles this same file. The module logs the complaints.
#if hasFeature(Embedded)
import CPAMShim
#else
import Glibc
#endif

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
/// bad value is handed to `complain` (the module logs it at error level) and the safer default
/// is kept.
struct Options {
    /// The account twofactord runs as (scripts/install creates it).
    static let defaultDaemonUser: StaticString = "twofactor\0"
    static let defaultPrompt: StaticString = "Two-factor authentication code (or recovery code): \0"
    static let defaultForwardPrompt: StaticString = "Password and two-factor code: \0"
    static let defaultTimeoutSeconds = 3
    static let maxTimeoutSeconds = 60
    /// PAM_MAX_MSG_SIZE is 512; keep well under it.
    static let maxPromptLength = 256

    /// Points into argv (valid for the call) or at Product.defaultSocketPath; not NUL-terminated.
    var socketPath: UnsafeBufferPointer<UInt8>
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
    /// Enrollment at login (pam_twofactor(8)): an account the daemon requires but that has not
    /// enrolled is let past `auth` and enrolls in the account phase, after the first factor.
    var enrollAtLogin = false
    /// Length of a TOTP code at the end of a password+code answer (forward_pass).
    var digits = 6

    /// `complain(argument, problem)` is called for each option that is unknown or has a bad value.
    init(argc: Int32, argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
         complain: (_ argument: UnsafePointer<CChar>, _ problem: String) -> Void) {
        socketPath = Options.defaultSocketPath
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
            } else if Options.equals(argument, "enroll_at_login\0") {
                enrollAtLogin = true
            } else if let value = Options.value(argument, "socket=") {
                let path = cStringBytes(value)
                // An absolute path that fits sockaddr_un (with its NUL).
                if path.count > 0, path.count < Options.socketPathCapacity, path[0] == UInt8(ascii: "/") {
                    socketPath = path
                } else {
                    socketPath = Options.defaultSocketPath  // what the complaint says, like every other option
                    complain(argument, "must be an absolute path shorter than \(Options.socketPathCapacity) bytes; using the default socket")
                }
            } else if let value = Options.value(argument, "daemon_user=") {
                let length = strlen(value)
                if length > 0, length <= Product.maxUserNameLength {
                    daemonUser = value
                } else {
                    daemonUser = Options.cString(Options.defaultDaemonUser)
                    complain(argument, "must be a user name of 1 to \(Product.maxUserNameLength) bytes; using twofactor")
                }
            } else if let value = Options.value(argument, "timeout=") {
                if let seconds = Options.smallNumber(value), seconds >= 1, seconds <= Options.maxTimeoutSeconds {
                    timeoutSeconds = seconds
                } else {
                    timeoutSeconds = Options.defaultTimeoutSeconds
                    complain(argument, "must be whole seconds from 1 to \(Options.maxTimeoutSeconds); using \(Options.defaultTimeoutSeconds)")
                }
            } else if let value = Options.value(argument, "prompt=") {
                let length = strlen(value)
                if length > 0, length <= Options.maxPromptLength {
                    prompt = value
                } else {
                    prompt = nil
                    complain(argument, "must be 1 to \(Options.maxPromptLength) bytes; using the default prompt")
                }
            } else if let value = Options.value(argument, "failmode=") {
                if Options.equals(value, "secure\0") {
                    failMode = .secure
                } else if Options.equals(value, "open\0") {
                    failMode = .open
                } else {
                    failMode = .secure
                    complain(argument, "must be secure or open; using secure")
                }
            } else if let value = Options.value(argument, "digits=") {
                if let count = Options.smallNumber(value), count >= 6, count <= 8 {
                    digits = count
                } else {
                    digits = 6
                    complain(argument, "must be 6, 7 or 8; using 6")
                }
            } else {
                complain(argument, "is not a known option; ignored")
            }
        }
        // use_first_pass is the stricter of the two when both are given.
        answerSource = sawUseFirstPass ? .useFirstPass : sawTryFirstPass ? .tryFirstPass : .prompt
    }

    /// The log line for a complaint: the argument sanitized by `printable` and quoted, with '"'
    /// shown as '?' too, so the quotes always delimit the argument.
    static func complaint(_ argument: UnsafePointer<CChar>, _ problem: String) -> String {
        let unquoted = cStringBytes(argument).map { $0 == UInt8(ascii: "\"") ? UInt8(ascii: "?") : $0 }
        return "option \"\(printable(unquoted, limit: 80))\" \(problem)"
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
            guard index < 4, CodeShape.isDigit(byte) else { return nil }
            result = result * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
        }
        return index == 0 ? nil : result
    }

    static var defaultSocketPath: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: Product.defaultSocketPath.utf8Start, count: Product.defaultSocketPath.utf8CodeUnitCount)
    }

    /// sun_path's size: a socket path must be shorter (it needs its NUL).
    static var socketPathCapacity: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) }
}
