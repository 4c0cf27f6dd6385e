// Exit statuses and the errors that carry them. Every failure ends up here, so the numbers in
// `--help` and the man page are the only ones the command returns.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorClient
import TwoFactorWire

/// The documented exit statuses of `twofactor`.
enum ExitStatus: Int32 {
    case success = 0
    case failure = 1
    case usage = 2
    case daemonNotRunning = 3
    case notEnrolled = 4
    case alreadyEnrolled = 5
    case permissionDenied = 6
    case wrongCode = 7
    case lockedOut = 8
    /// Interrupted by a signal (Ctrl-C): the shell convention 128 + SIGINT.
    case interrupted = 130
}

/// The exit status table, as shown at the end of every `--help` and in the man page.
enum ExitStatusHelp {
    static let table = """
        EXIT STATUS
          0    success
          1    other error (daemon error, cancelled, bad input)
          2    usage error (unknown option, missing argument or subcommand)
          3    the daemon is not running (start it: systemctl start twofactord)
          4    two-factor authentication is not enabled for the account
          5    two-factor authentication is already enabled for the account
          6    permission denied (not root or admin, or not your account)
          7    incorrect or already used code
          8    the account is locked out after too many wrong codes
          130  interrupted (Ctrl-C); a pending enrollment is cancelled
        """
}

/// A failure with a message for people (printed to stderr as "twofactor: ...") and its status.
struct CLIError: Error, CustomStringConvertible {
    let status: ExitStatus
    let message: String

    init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    var description: String { message }

    static func daemonNotRunning(_ path: String) -> CLIError {
        CLIError(.daemonNotRunning, """
            the two-factor daemon is not running (nothing listens on \(path)).
            Start it with 'systemctl start twofactord' (or run 'twofactord' as root), then try again.
            """)
    }

    /// Maps a connection failure to a status and a sentence.
    static func from(_ error: ClientError) -> CLIError {
        switch error {
        case .daemonNotRunning(let path):
            return daemonNotRunning(path)
        case .permissionDenied(let path):
            return CLIError(.permissionDenied, "permission denied connecting to \(path)")
        case .timedOut:
            return CLIError(.failure, "the two-factor daemon did not answer in time")
        case .connectionClosed:
            return CLIError(.failure, "the two-factor daemon closed the connection (it may be overloaded or restarting)")
        case .protocolError(let what):
            return CLIError(.failure, "unexpected answer from the two-factor daemon: \(what)")
        case .system(let call, let code):
            return CLIError(.failure, "\(call) failed: \(String(cString: strerror(code)))")
        }
    }

    /// Maps a daemon answer that is not the expected success to a status and a sentence.
    /// `account` names whose account it is in messages ("you" for the caller's own).
    static func from(response: WireMessage, account: Account) -> CLIError {
        let detail = response.string(.message).map { ": \(printable($0))" } ?? ""
        guard let status = response.status else {
            return CLIError(.failure, "the two-factor daemon answered an unknown status 0x\(String(response.code, radix: 16))")
        }
        switch status {
        case .notEnrolled:
            return CLIError(.notEnrolled, account.isSelf
                ? "two-factor authentication is not enabled for your account (\(account.name)); run 'twofactor enable' to set it up"
                : "two-factor authentication is not enabled for \(account.name)")
        case .alreadyEnrolled:
            return CLIError(.alreadyEnrolled, account.isSelf
                ? "two-factor authentication is already enabled for your account (\(account.name)). To move it to a new phone, run 'twofactor disable' first, then 'twofactor enable'"
                : "two-factor authentication is already enabled for \(account.name)")
        case .wrongCode:
            return CLIError(.wrongCode, Product.incorrectCodeMessage + detail)
        case .codeReused:
            return CLIError(.wrongCode, "that code was already used; wait for the next code from the app" + detail)
        case .lockedOut:
            return CLIError(.lockedOut, lockedMessage(account: account, until: response.uint64(.lockedUntil)))
        case .codeRequired:
            return CLIError(.wrongCode, "a current two-factor code or a recovery code is required")
        case .noPendingEnrollment:
            return CLIError(.failure, "no enrollment is waiting for confirmation (it expired, was cancelled or replaced by another 'twofactor enable'); run 'twofactor enable' again")
        case .permissionDenied:
            let reason = response.string(.message).map { printable($0) }
                ?? "only root and members of the two-factor admin group may manage other accounts or use admin commands"
            return CLIError(.permissionDenied, "permission denied: " + reason)
        case .badRequest:
            return CLIError(.failure, "the two-factor daemon refused the request" + (detail.isEmpty ? " as malformed" : detail))
        case .unsupportedVersion:
            return CLIError(.failure, "the two-factor daemon speaks another protocol version; install matching versions of twofactor and twofactord")
        case .unknownOperation:
            return CLIError(.failure, "the two-factor daemon does not know this operation; it may be older than this command")
        case .internalError:
            return CLIError(.failure, "the two-factor daemon had an internal error; nothing was changed" + detail)
        case .busy:
            return CLIError(.failure, "the two-factor daemon is busy; try again in a moment")
        case .ok, .accepted, .enrolled, .exempt:
            return CLIError(.failure, "unexpected answer from the two-factor daemon: \(status)")
        }
    }

    static func lockedMessage(account: Account, until: UInt64?) -> String {
        let whose = account.isSelf ? "your account (\(account.name))" : account.name
        guard let until else {
            return "\(whose) is locked out after too many wrong codes; wait, or ask an administrator to run 'twofactor admin unlock \(account.name)'"
        }
        return "\(whose) is locked out after too many wrong codes until \(TimeText.absolute(until)) (\(TimeText.relative(until))); wait, or ask an administrator to run 'twofactor admin unlock \(account.name)'"
    }
}
