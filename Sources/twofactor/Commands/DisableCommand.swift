// `twofactor disable`: turns two-factor authentication off for the caller's account.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

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
