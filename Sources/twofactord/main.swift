// twofactord: the TOTP verification daemon. See twofactord(8) and config/twofactord.conf.
import ArgumentParser
import Foundation
import TwoFactorDaemon

struct TwoFactorDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twofactord",
        abstract: "Verifies TOTP two-factor codes for PAM over a Unix socket.",
        discussion: """
            Configuration: \(DaemonConfig.defaultPath) (see twofactord(8)).
            Maintenance: twofactord rotate-key --help, twofactord migrate-store --help.
            """)

    @Option(name: .long, help: ArgumentHelp("Configuration file.", valueName: "FILE"))
    var config: String?

    @Flag(name: .long, help: "Check the configuration file, print the result and exit (0 valid, 1 not).")
    var checkConfig = false

    @Flag(name: .long, help: "Print every key with its value from the configuration file (or its default) and exit.")
    var printConfig = false

    @Flag(name: .long, help: "Print the documented example configuration, every key with its default, and exit.")
    var printDefaultConfig = false

    @Option(name: .long, help: ArgumentHelp(
        "Where the audit log goes, overriding the configuration's `log`: auto, syslog or stderr. "
            + "stderr suits a daemon started without systemd on a machine without syslog.",
        valueName: "TARGET"))
    var log: LogTarget?

    @Flag(name: .long, help: "Print the version and exit.")
    var version = false

    func run() throws {
        if version {
            print("twofactord \(Daemon.version)")
            return
        }
        if printDefaultConfig {
            print(ConfigKeys.exampleFile(), terminator: "")
            return
        }
        let path = config ?? DaemonConfig.defaultPath
        var settings: DaemonConfig
        do {
            settings = try ConfigParser.load(path: path, missingIsDefault: config == nil)
            if let log { settings.log = log }
        } catch {
            FileHandle.standardError.write(Data("twofactord: \(error)\n".utf8))
            throw ExitCode(checkConfig || printConfig ? 1 : 78)
        }
        if printConfig {
            print(ConfigKeys.effectiveConfig(settings), terminator: "")
            return
        }
        if checkConfig {
            print("twofactord: \(path): configuration is valid")
            return
        }
        do {
            let status = try Daemon(config: settings).run()
            throw ExitCode(status)
        } catch let exit as DaemonExit {
            FileHandle.standardError.write(Data("twofactord: \(exit)\n".utf8))
            throw ExitCode(exit.status)
        }
    }
}

extension LogTarget: ExpressibleByArgument {}
extension KeyRotation.Step: ExpressibleByArgument {}

/// The configuration a maintenance command works on (the daemon's, by default).
func loadConfig(_ path: String?) throws -> DaemonConfig {
    do {
        return try ConfigParser.load(path: path ?? DaemonConfig.defaultPath, missingIsDefault: path == nil)
    } catch {
        FileHandle.standardError.write(Data("twofactord: \(error)\n".utf8))
        throw ExitCode(78)
    }
}

func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("twofactord: \(message)\n".utf8))
    return ExitCode(1)
}

struct RotateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twofactord rotate-key",
        abstract: "Re-seal every TOTP secret under a new key while the daemons keep running.",
        discussion: """
            The key file (key_file) becomes a ring: the recovery-code key, the sealing key and, \
            during a rotation, a key that only opens. Running daemons re-read a changed key file \
            by themselves. One machine: --step all (the default). A fleet sharing one database: \
            stage, copy the key file to every node, promote (re-seals), copy again, finish \
            (re-seals what was sealed meanwhile and drops the old key), copy again.
            """)

    @Option(name: .long, help: ArgumentHelp("Configuration file (its key_file and store).", valueName: "FILE"))
    var config: String?

    @Option(name: .long, help: "stage, promote, finish or all.")
    var step: KeyRotation.Step = .all

    func run() throws {
        let settings = try loadConfig(config)
        do {
            let location = StoreLocation.configured(settings)
            let store = try location.open(mustExist: false)
            defer { store.close() }
            let report = try KeyRotation.run(step: step, keyFile: settings.keyFile, store: store) { print($0) }
            print("\(settings.keyFile) holds \(report.ring)")
        } catch {
            throw fail("rotate-key: \(error)")
        }
    }
}

struct MigrateStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twofactord migrate-store",
        abstract: "Copy every account from one store to another (SQLite and PostgreSQL, either way).",
        discussion: """
            Copies sealed secrets, pending enrollments, recovery-code hashes and their use, last \
            steps, drift, failures and lockouts, in one transaction, then reads the target back \
            and compares. Stop the daemons first; both stores must go with the same key file. \
            URLs: \(StoreLocation.urlForms). Exit status 0 when copied (or dry run), 1 otherwise.
            """)

    @Option(name: .long, help: ArgumentHelp("The store to copy from.", valueName: "URL"))
    var from: String

    @Option(name: .long, help: ArgumentHelp("The store to copy to.", valueName: "URL"))
    var to: String

    @Flag(name: .long, help: "Read both stores and report, but write nothing.")
    var dryRun = false

    @Flag(name: [.customLong("replace"), .customLong("force")],
          help: "Delete the accounts a non-empty target holds, in the same transaction, and copy.")
    var replace = false

    func run() throws {
        do {
            let source = try StoreLocation(url: from), target = try StoreLocation(url: to)
            guard source != target else { throw StoreError("--from and --to name the same store") }
            let from = try source.open(mustExist: true)
            defer { from.close() }
            // A dry run does not create a SQLite file that is not there yet.
            let to = dryRun && !target.exists ? nil : try target.open(mustExist: false)
            defer { to?.close() }
            print("from \(source.description) to \(target.description)")
            _ = try StoreMigration.run(source: from, target: to, dryRun: dryRun, replace: replace) { print($0) }
        } catch {
            throw fail("migrate-store: \(error)")
        }
    }
}

// The maintenance commands are dispatched by hand, not as ArgumentParser subcommands: those would
// hand a `--config` after the subcommand's name to the daemon's own --config and not to theirs.
let maintenance: [String: any ParsableCommand.Type] = ["rotate-key": RotateKey.self, "migrate-store": MigrateStore.self]
if CommandLine.arguments.count > 1, let command = maintenance[CommandLine.arguments[1]] {
    command.main(Array(CommandLine.arguments.dropFirst(2)))
} else {
    TwoFactorDaemonCommand.main()
}
