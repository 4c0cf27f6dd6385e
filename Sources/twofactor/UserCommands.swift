// `twofactor recovery-codes`, `disable` and `status`: managing your own enrollment.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

/// Asks the daemon for the caller's status, failing early (before any prompt) when there is
/// nothing to prove a code against or when the account is locked.
private func requireEnrolled(_ account: Account, client: DaemonClient) throws(CLIError) -> AccountStatus {
    let response = try client.send(try DaemonClient.request(.status, account: account), account: account)
    let status = AccountStatus(response, user: account.name)
    guard status.enrolled else {
        throw CLIError.from(response: WireMessage(status: .notEnrolled), account: account)
    }
    if status.isLocked() {
        throw CLIError(.lockedOut, CLIError.lockedMessage(account: account, until: status.lockedUntil))
    }
    return status
}

/// Sends `operation` with a code from `source`, asking again after a wrong code when a person is
/// typing. Returns the successful answer.
private func sendWithCode(_ operation: Operation, account: Account, client: DaemonClient,
                          source: CodeSource) throws(CLIError) -> WireMessage {
    let tries = source.attempts(3)
    var attempt = 0
    while true {
        attempt += 1
        guard var code = try source.next(prompt: "Current two-factor code (or a recovery code): ", echo: false) else {
            throw CLIError(.failure, "no code was entered; nothing was changed")
        }
        defer { ConstantTime.zero(&code) }
        let outcome: CLIError
        if let problem = codeShapeProblem(code, digits: [6, 7, 8]) {
            outcome = CLIError(.wrongCode, "\(Product.incorrectCodeMessage) (\(problem))")
        } else {
            var request = try DaemonClient.request(operation, account: account, code: code)
            let response = try client.send(request)
            request.wipeCodes()
            if response.status == .ok { return response }
            outcome = CLIError.from(response: response, account: account)
            guard outcome.status == .wrongCode else { throw outcome }
        }
        if attempt >= tries { throw outcome }
        Terminal.writeError("\(outcome.message). Try again.\n")
    }
}

struct RecoveryCodesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recovery-codes",
        abstract: "Replace your recovery codes with a new set.",
        discussion: """
            Asks for a current code from your authenticator app (or one of your recovery codes) \
            to prove it is you, then shows 8 new recovery codes, once. The old recovery codes \
            stop working at that moment. Typing is not shown at the prompt. A wrong code can be \
            retried up to 3 times; every wrong code counts toward a lockout.

            \(HelpText.codeAnswers)

            With --json the new codes are printed as {"user", "recovery_codes"}. With \
            --code-stdin the code is read from one line of standard input.

            \(ExitStatusHelp.table)

            EXAMPLES
              twofactor recovery-codes
              oathtool --totp -b "$KEY" | twofactor recovery-codes --code-stdin --json
            """,
        aliases: ["regenerate-recovery-codes"]
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var input: CodeInputOptions

    func run() throws {
        let client = global.client
        let account = try Account.caller()
        Terminal.catchInterrupts()
        _ = try requireEnrolled(account, client: client)
        let response = try sendWithCode(.regenerateRecoveryCodes, account: account, client: client, source: input.source)
        let codes = response.allStrings(.recoveryCode)
        if global.json {
            JSON.object([("user", .string(account.name)), ("recovery_codes", .array(codes.map(JSON.string)))]).print()
            return
        }
        print("""

            New recovery codes for \(printable(account.name)); the old ones no longer work:

            \(RecoveryCodeText.list(codes))

            \(RecoveryCodeText.saveAdvice)
            """)
    }
}

struct Disable: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn off two-factor authentication for your account.",
        discussion: """
            Asks whether you really want to turn it off (unless --yes), then for a current code \
            from your authenticator app or a recovery code (typing is not shown), and removes \
            your key and recovery codes. Logins no longer ask for a code. You can remove the \
            entry from the app afterwards; 'twofactor enable' sets up a new one.

            \(HelpText.codeAnswers)

            Lost the phone and the recovery codes? Then an administrator can turn it off for \
            you with 'twofactor admin reset USER'.

            With --code-stdin the code is read from one line of standard input and no question \
            is asked. With --json the result is {"user", "enrolled": false}.

            \(ExitStatusHelp.table)

            EXAMPLES
              twofactor disable
              printf '%s\\n' ABCD-EFGH-JKMN | twofactor disable --code-stdin
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var input: CodeInputOptions

    @Flag(name: [.short, .long], help: "Do not ask whether you are sure.")
    var yes = false

    func run() throws {
        let client = global.client
        let account = try Account.caller()
        Terminal.catchInterrupts()
        _ = try requireEnrolled(account, client: client)
        if !yes && !input.codeStdin {
            guard Terminal.confirm("Turn off two-factor authentication for \(account.name)?") else {
                throw CLIError(.failure, "cancelled; two-factor authentication stays on")
            }
        }
        _ = try sendWithCode(.disable, account: account, client: client, source: input.source)
        if global.json {
            JSON.object([("user", .string(account.name)), ("enrolled", .bool(false))]).print()
            return
        }
        print("Two-factor authentication is now disabled for \(printable(account.name)); logins no longer ask for a code.")
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether two-factor authentication is on for your account.",
        discussion: """
            Shows whether two-factor authentication is enabled, since when, when a code was last \
            accepted, how many recovery codes are left, how many wrong codes were typed in a row \
            and whether the account is locked out (and until when). It asks nothing. The exit \
            status is 0 whether or not it is enabled; use --json to check from a script.

            With --json: {"user", "enrolled", "pending", "enrolled_since", "last_used", \
            "recovery_codes_left", "failures", "locked", "locked_until", "drift_steps"}; times \
            are ISO 8601 in UTC, or null.

            \(ExitStatusHelp.table)

            EXAMPLES
              twofactor status
              twofactor status --json
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let client = global.client
        let account = try Account.caller()
        let response = try client.send(try DaemonClient.request(.status, account: account), account: account)
        let status = AccountStatus(response, user: account.name)
        if global.json {
            status.json.print()
        } else {
            print(status.text(isSelf: true))
        }
    }
}
