// The command tree and the options every command shares. Each subcommand's --help reads like a
// man page section: what it does, what it asks, its exit statuses and an example.
import ArgumentParser
import TwoFactorWire

struct TwoFactorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twofactor",
        abstract: "Manage two-factor authentication (TOTP codes from a phone app) for Linux logins.",
        discussion: """
            Once you enable two-factor authentication, logins that use the twofactor PAM module \
            (ssh, sudo, login, ...) ask for a 6-digit code from an authenticator app on your \
            phone after your password. Every user manages their own account; root and members \
            of the admin group can use the admin commands for everyone.

            The commands talk to the daemon twofactord over a Unix socket, which identifies the \
            caller by its user id: you always act as yourself.

            Run 'twofactor help SUBCOMMAND' or 'twofactor SUBCOMMAND --help' for details.

            \(ExitStatusHelp.table)

            EXAMPLES
              twofactor enable            set up the app on your phone
              twofactor status            is it on, how many recovery codes are left
              sudo twofactor admin list   every account that uses it
            """,
        version: twofactorVersion,
        subcommands: [Enable.self, RecoveryCodesCommand.self, Disable.self, StatusCommand.self, Admin.self]
    )
}

let twofactorVersion = "1.0.0"

extension TwoFactorCommand {
    /// `twofactor` alone is a usage error, not a request for help.
    func run() throws {
        throw CLIError(.usage, "a subcommand is needed: enable, recovery-codes, disable, status or admin (see 'twofactor --help')")
    }
}

/// Options every command accepts.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long,
            help: ArgumentHelp("Socket of the daemon (default: $TWOFACTOR_SOCKET, else \(Product.defaultSocketPath)).",
                               valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print the result as JSON on standard output (stable keys; messages and prompts go to standard error).")
    var json = false

    var client: DaemonClient { DaemonClient(socketOption: socket) }
}

/// How commands that need a code get it.
struct CodeInputOptions: ParsableArguments {
    @Flag(name: [.customLong("code-stdin"), .customLong("non-interactive")],
          help: "Read the code from one line of standard input instead of prompting (for scripts).")
    var codeStdin = false

    var source: CodeSource { CodeSource(fromStandardInput: codeStdin) }
}

extension QRTerminalStyle: ExpressibleByArgument {}
extension QRImageFormat: ExpressibleByArgument {}

// MARK: - Help texts shared by several subcommands

enum HelpText {
    static let codeAnswers = """
        A code is the 6-digit number your authenticator app shows now, or one of your recovery \
        codes (like ABCD-EFGH-JKMN). Each code works once. Wrong codes count toward a lockout: \
        after several in a row the account is locked for a while (exit status 8).
        """
}
