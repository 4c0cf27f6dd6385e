// twofactor: the command line for people. Parses arguments, runs the command, and turns every
// outcome into one of the documented exit statuses (see Errors.swift).
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

setlocale(LC_ALL, "")

func exitWith(_ status: Int32) -> Never {
    fflush(nil)
    exit(status)
}

/// `twofactor --socket PATH status` should work like `twofactor status --socket PATH`: the
/// parser only knows options at the leaf command, so the global options given before the
/// subcommand are moved behind it.
func hoistingGlobalOptions(_ arguments: [String]) -> [String] {
    var hoisted: [String] = []
    var index = 0
    while index < arguments.count {
        let argument = arguments[index]
        if argument == "--json" || argument.hasPrefix("--socket=") {
            hoisted.append(argument)
            index += 1
        } else if argument == "--socket", index + 1 < arguments.count {
            hoisted += [argument, arguments[index + 1]]
            index += 2
        } else {
            break
        }
    }
    guard !hoisted.isEmpty, index < arguments.count else { return arguments }
    var rest = Array(arguments[index...])
    rest.insert(contentsOf: hoisted, at: rest.firstIndex(of: "--") ?? rest.count)
    return rest
}

do {
    var command = try TwoFactorCommand.parseAsRoot(hoistingGlobalOptions(Array(CommandLine.arguments.dropFirst())))
    try command.run()
    exitWith(ExitStatus.success.rawValue)
} catch let error as CLIError {
    if error.status != .interrupted {
        Terminal.writeError("twofactor: \(error.message)\n")
    }
    exitWith(error.status.rawValue)
} catch let error as ExitQuietly {
    exitWith(error.status.rawValue)
} catch {
    let code = TwoFactorCommand.exitCode(for: error)
    if code == .success {
        // --help, --version, `help SUBCOMMAND`
        print(TwoFactorCommand.fullMessage(for: error))
        exitWith(0)
    }
    if code == .validationFailure {
        Terminal.writeError(TwoFactorCommand.fullMessage(for: error) + "\n")
        exitWith(ExitStatus.usage.rawValue)
    }
    let message = TwoFactorCommand.fullMessage(for: error)
    if !message.isEmpty { Terminal.writeError("twofactor: \(message)\n") }
    exitWith(code.rawValue == 0 ? ExitStatus.failure.rawValue : code.rawValue)
}
