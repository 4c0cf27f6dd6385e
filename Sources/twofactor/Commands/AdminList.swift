// `twofactor admin list`: every enrolled account, a page at a time (listAfter/listMore), printed
// as each page arrives, so a million accounts need no more memory than one page.
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
            confirmation), in byte order of the user names: user, enabled since, last accepted \
            code, recovery codes left, and whether it is locked out. Asks nothing. The list is \
            read a page at a time and printed as it comes, so it works for any number of \
            accounts; accounts changed while it runs may show their old or new state.

            With --json: {"accounts": [...]} with the keys of 'twofactor status --json', one \
            array written incrementally.

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin list
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        var printer = ListPrinter(json: global.json)
        var after = ""
        while true {
            var request = WireMessage(operation: .listAccounts)
            do { try request.append(.listAfter, string: after) } catch {
                throw CLIError(.failure, "a user name in the account list is too long")
            }
            let response = try global.client.send(request, account: adminAccount())
            let records: [WireMessage]
            do {
                records = try response.allNested(.account)
            } catch {
                throw CLIError(.failure, "the two-factor daemon sent a malformed account list")
            }
            printer.add(records.map { AccountStatus($0, user: "?") })
            guard response.bool(.listMore) == true else { break }
            // The daemon pages by the user names it sent; a page without one could not advance.
            guard let last = records.last?.string(.user), last != after else {
                throw CLIError(.failure, "the two-factor daemon sent a malformed account list")
            }
            after = last
        }
        printer.finish()
    }
}

/// Writes the list as pages arrive: the JSON array one element at a time, or the table with
/// its column widths taken from the first page (a longer cell later only widens its own row).
private struct ListPrinter {
    let json: Bool
    private var count = 0
    private var widths: [Int]? = nil
    private static let header = ["USER", "ENROLLED SINCE", "LAST USED", "CODES LEFT", "LOCKED"]

    init(json: Bool) { self.json = json }

    mutating func add(_ page: [AccountStatus]) {
        if json {
            for account in page {
                // The same layout as JSON.rendered() of {"accounts": [...]}.
                Swift.print(count == 0 ? "{\n  \"accounts\": [\n    " : ",\n    ", terminator: "")
                Swift.print(account.json.rendered(indent: 2), terminator: "")
                count += 1
            }
            return
        }
        guard !page.isEmpty else { return }
        let rows = page.map(\.tableRow)
        if widths == nil {
            var table = TextTable(header: Self.header)
            table.rows = rows
            widths = table.widths
            Swift.print(TextTable.line(Self.header, widths: table.widths))
        }
        for row in rows { Swift.print(TextTable.line(row, widths: widths ?? [])) }
        count += page.count
    }

    func finish() {
        if json {
            Swift.print(count == 0 ? "{\n  \"accounts\": []\n}" : "\n  ]\n}")
        } else if count == 0 {
            Swift.print("No account uses two-factor authentication yet.")
        }
    }
}
