// `twofactor recovery-codes`: a new set of recovery codes for the caller; the old set stops working.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

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
