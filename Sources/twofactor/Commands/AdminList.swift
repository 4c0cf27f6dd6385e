// `twofactor admin list`: every enrolled account.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorWire

struct AdminList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the accounts that use two-factor authentication.",
        discussion: """
            One line per account the daemon knows (enrolled, or with an enrollment waiting for \
            confirmation): user, enabled since, last accepted code, recovery codes left, and \
            whether it is locked out. Asks nothing.

            With --json: {"accounts": [...]} with the keys of 'twofactor status --json'.

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin list
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let response = try global.client.send(WireMessage(operation: .listAccounts), account: adminAccount())
        let accounts: [AccountStatus]
        do {
            accounts = try response.allNested(.account).map { AccountStatus($0, user: "?") }
                .sorted { $0.user < $1.user }
        } catch {
            throw CLIError(.failure, "the two-factor daemon sent a malformed account list")
        }
        if global.json {
            JSON.object([("accounts", .array(accounts.map(\.json)))]).print()
            return
        }
        if accounts.isEmpty {
            print("No account uses two-factor authentication yet.")
            return
        }
        var table = TextTable(header: ["USER", "ENROLLED SINCE", "LAST USED", "CODES LEFT", "LOCKED"])
        table.rows = accounts.map(\.tableRow)
        print(table.rendered())
    }
}
