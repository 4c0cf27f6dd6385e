// `twofactor admin reset USER`: deletes another user's enrollment (lost phone and recovery codes).
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorWire

struct AdminReset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Turn off two-factor authentication for a user who lost their phone and recovery codes.",
        discussion: """
            Deletes the user's key, recovery codes and any unconfirmed enrollment; their logins \
            no longer ask for a code until they run 'twofactor enable' again. Check who is asking \
            before you do this: it removes the second factor of that account. Asks for \
            confirmation unless --yes is given (a non-interactive caller must give --yes). Not \
            for your own account: use 'twofactor disable' with a code, or ask another \
            administrator.

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin reset alice --yes
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The user's login name.") var user: String
    @Flag(name: [.short, .long], help: "Do not ask for confirmation.") var yes = false

    func validate() throws { try validateUserName(user) }

    func run() throws {
        let account = Account.other(user)
        if !yes {
            guard Terminal.standardInputIsTerminal else {
                throw CLIError(.usage, "refusing to reset \(printable(user)) without confirmation: standard input is not a terminal; add --yes")
            }
            Terminal.catchInterrupts()
            guard Terminal.confirm("Turn off two-factor authentication for \(printable(user)) and delete their recovery codes?") else {
                throw CLIError(.failure, "cancelled; nothing was changed")
            }
        }
        _ = try global.client.send(try DaemonClient.request(.resetAccount, account: account), account: account)
        if global.json {
            JSON.object([("user", .string(user)), ("reset", .bool(true))]).print()
        } else {
            print("Two-factor authentication is now off for \(printable(user)); they can run 'twofactor enable' to set it up again.")
        }
    }
}
