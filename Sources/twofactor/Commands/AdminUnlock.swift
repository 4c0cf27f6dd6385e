// `twofactor admin unlock USER`: ends another user's lockout after too many wrong codes.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorWire

struct AdminUnlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "End a user's lockout after too many wrong codes.",
        discussion: """
            Clears the user's count of wrong codes in a row, any lockout and the clock drift \
            learned for their app, so their next login can be tried at once. Asks nothing. Not \
            for your own account: another administrator can unlock yours.

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin unlock alice
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The user's login name.") var user: String

    func validate() throws { try validateUserName(user) }

    func run() throws {
        let account = Account.other(user)
        _ = try global.client.send(try DaemonClient.request(.unlockAccount, account: account), account: account)
        if global.json {
            JSON.object([("user", .string(user)), ("unlocked", .bool(true))]).print()
        } else {
            print("\(printable(user)) is unlocked; wrong codes in a row are back to 0.")
        }
    }
}
