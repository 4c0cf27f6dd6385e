// `twofactor status`: the caller's own enrollment.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

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
