// `twofactor admin ...`: for root and members of the daemon's admin group. The daemon decides who
// is an admin (by the caller's uid and groups); a refusal is exit status 6.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorWire

struct Admin: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage other users' two-factor authentication (root and the admin group only).",
        discussion: """
            These commands work for root and for members of the daemon's admin group \
            (admin_group in twofactord.conf, twofactor-admin by default). Anyone else gets exit \
            status 6.

            \(ExitStatusHelp.table)

            EXAMPLES
              sudo twofactor admin list
              sudo twofactor admin reset alice
              sudo twofactor admin clock
            """,
        subcommands: [AdminList.self, AdminStatus.self, AdminReset.self, AdminUnlock.self, AdminClock.self]
    )

    func run() throws {
        throw CLIError(.usage, "an admin subcommand is needed: list, status, reset, unlock or clock (see 'twofactor admin --help')")
    }
}

/// A user name argument checked for what can never be a login name.
private func validateUserName(_ name: String) throws {
    if name.isEmpty { throw ValidationError("the user name is empty") }
    if name.utf8.count > Product.maxUserNameLength { throw ValidationError("the user name is too long") }
    if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
        throw ValidationError("the user name contains a control character")
    }
}

/// The admin (the caller) as the account for messages that are about the caller's rights.
private func adminAccount() -> Account {
    (try? Account.caller()) ?? Account(name: "you", isSelf: true)
}

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

struct AdminClock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clock",
        abstract: "Check this machine's clock, which TOTP codes depend on.",
        discussion: """
            Codes from the app are only accepted when this machine's clock and the phone's agree \
            to within about 30 seconds. Shows the daemon's last measurement against its time \
            servers: the offset (this clock minus true time), the server and its stratum, the \
            round-trip delay, how old the measurement is, whether the kernel reports the clock \
            as synchronized, and a verdict (ok, warning, bad or unknown) with what to do about \
            it. Also whether codes are checked against corrected time now (only when at least \
            clock_min_sources servers agree over two rounds and no NTP daemon keeps the clock \
            synchronized), and the falsetickers: servers the others outvoted, whose answers are \
            ignored. Fields the daemon did not measure are left out. Asks nothing. The exit \
            status is 0 whatever the verdict; read "state" from --json in monitoring scripts.

            With --json: {"state", "offset_micros", "server", "stratum", "delay_micros", \
            "measured_at", "age_seconds", "kernel_synchronized", "kernel_error_micros", \
            "compensation", "correction_micros", "falsetickers", "remedy", "message"} (null \
            when not measured or not corrected; falsetickers is a list, maybe empty).

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin clock
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let response = try global.client.send(WireMessage(operation: .clockStatus), account: adminAccount())
        let now = TimeText.now()
        let measuredAt = response.uint64(.clockMeasuredAt)
        let age = measuredAt.map { now > $0 ? now - $0 : 0 }
        if global.json {
            JSON.object([
                ("state", .string(response.string(.clockState) ?? "unknown")),
                ("offset_micros", .optionalInt(response.int64(.clockOffsetMicros))),
                ("server", .optionalString(response.string(.clockServer))),
                ("stratum", .optionalInt(response.uint8(.clockStratum))),
                ("delay_micros", .optionalInt(response.int64(.clockDelayMicros))),
                ("measured_at", .timestamp(measuredAt)),
                ("age_seconds", .optionalInt(age)),
                ("kernel_synchronized", response.bool(.kernelSynchronized).map(JSON.bool) ?? .null),
                ("kernel_error_micros", .optionalInt(response.int64(.kernelErrorMicros))),
                ("compensation", response.bool(.clockCompensation).map(JSON.bool) ?? .null),
                ("correction_micros", .optionalInt(response.int64(.clockCorrectionMicros))),
                ("falsetickers", .array(response.allStrings(.clockFalseticker).map(JSON.string))),
                ("remedy", .optionalString(response.string(.clockRemedy))),
                ("message", .optionalString(response.string(.message))),
            ]).print()
            return
        }
        let state = response.string(.clockState) ?? "unknown"
        var fields = FieldList()
        if let offset = response.int64(.clockOffsetMicros) {
            fields.add("Offset", "\(formatMicros(offset, signed: true)) (this clock minus true time)")
        }
        if let server = response.string(.clockServer) {
            let stratum = response.uint8(.clockStratum).map { " (stratum \($0))" } ?? ""
            fields.add("Time server", printable(server) + stratum)
        } else if let stratum = response.uint8(.clockStratum) {
            fields.add("Stratum", String(stratum))
        }
        if let delay = response.int64(.clockDelayMicros) {
            fields.add("Round-trip delay", formatMicros(delay, signed: false))
        }
        if let measuredAt, let age {
            fields.add("Measured", "\(TimeText.absolute(measuredAt)) (\(TimeText.duration(age)) ago)")
        }
        if let synchronized = response.bool(.kernelSynchronized) {
            var value = synchronized ? "yes" : "no"
            if let error = response.int64(.kernelErrorMicros) {
                value += " (estimated error \(formatMicros(error, signed: false)))"
            }
            fields.add("Kernel synchronized", value)
        }
        if let compensation = response.bool(.clockCompensation) {
            let value: String
            if let correction = response.int64(.clockCorrectionMicros) {
                value = "on: codes are checked against the corrected time (\(formatMicros(correction, signed: true)))"
            } else {
                value = compensation ? "on, but not applied now: codes are checked against this clock" : "off"
            }
            fields.add("Compensation", value)
        }
        let falsetickers = response.allStrings(.clockFalseticker)
        if !falsetickers.isEmpty {
            fields.add("Falsetickers", falsetickers.map { printable($0) }.joined(separator: ", ")
                       + " (outvoted by the other servers; ignored)")
        }
        var out = "Clock check: \(printable(state))"
        if !fields.items.isEmpty { out += "\n" + fields.rendered() }
        if let message = response.string(.message), !message.isEmpty { out += "\n\n" + printable(message) }
        if let remedy = response.string(.clockRemedy), !remedy.isEmpty { out += "\n\nRemedy: " + printable(remedy) }
        print(out)
    }
}

/// "+12.345 s", "-3.210 ms", "0.450 ms".
func formatMicros(_ micros: Int64, signed: Bool) -> String {
    let sign = micros < 0 ? "-" : (signed ? "+" : "")
    let magnitude = micros.magnitude
    func threeDecimals(_ whole: UInt64, _ thousandths: UInt64) -> String {
        let fraction = String(thousandths)
        return "\(whole).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
    if magnitude >= 1_000_000 {
        return sign + threeDecimals(magnitude / 1_000_000, (magnitude % 1_000_000) / 1000) + " s"
    }
    return sign + threeDecimals(magnitude / 1000, magnitude % 1000) + " ms"
}
