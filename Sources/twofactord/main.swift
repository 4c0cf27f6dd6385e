// twofactord: the TOTP verification daemon. See twofactord(8) and config/twofactord.conf.
import ArgumentParser
import Foundation
import TwoFactorDaemon

struct TwoFactorDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twofactord",
        abstract: "Verifies TOTP two-factor codes for PAM over a Unix socket.",
        discussion: "Configuration: \(DaemonConfig.defaultPath) (see twofactord(8)).")

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

TwoFactorDaemonCommand.main()
