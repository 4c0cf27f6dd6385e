// `twofactor admin ...`: for root and members of the daemon's admin group. The daemon decides who
// is an admin (by the caller's uid and groups); a refusal is exit status 6. The subcommands each
// have a file of their own (AdminList.swift, AdminStatus.swift, ...).
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
              sudo twofactor admin import-google-authenticator --all --dry-run
              sudo twofactor admin doctor
            """,
        subcommands: [AdminList.self, AdminStatus.self, AdminReset.self, AdminUnlock.self, AdminClock.self,
                      AdminHealth.self, AdminEnroll.self, AdminImportGoogleAuthenticator.self, AdminDoctor.self]
    )

    func run() throws {
        throw CLIError(.usage, "an admin subcommand is needed: list, status, reset, unlock, clock, health, enroll, import-google-authenticator or doctor (see 'twofactor admin --help')")
    }
}

/// A user name argument checked for what can never be a login name.
func validateUserName(_ name: String) throws {
    if name.isEmpty { throw ValidationError("the user name is empty") }
    if name.utf8.count > Product.maxUserNameLength { throw ValidationError("the user name is too long") }
    if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
        throw ValidationError("the user name contains a control character")
    }
}

/// The admin (the caller) as the account for messages that are about the caller's rights.
func adminAccount() -> Account {
    (try? Account.caller()) ?? Account(name: "you", isSelf: true)
}
