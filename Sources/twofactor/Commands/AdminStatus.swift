// `twofactor admin status USER`: one account, as the admin sees it.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorWire

struct AdminStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show one user's two-factor state.",
        discussion: """
            The same as 'twofactor status' for another user: enabled or not, since when, last \
            used, recovery codes left, failures in a row and lockout. Asks nothing.

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin status alice --json
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The user's login name.") var user: String

    func validate() throws { try validateUserName(user) }

    func run() throws {
        let account = Account.other(user)
        let response = try global.client.send(try DaemonClient.request(.status, account: account), account: account)
        let status = AccountStatus(response, user: user)
        if global.json {
            status.json.print()
        } else {
            print(status.text(isSelf: false))
        }
    }
}
