// `twofactor admin enroll USER --hotp|--totp --secret-stdin`: root sets another user's key, the
// secret of a hardware token. The request (adminEnroll) is built by AdminEnrollRequest, which the
// google-authenticator import sends too.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

/// One adminEnroll request: the one place its fields are written.
struct AdminEnrollRequest {
    var user: String
    var secret: [UInt8]
    var kind: OTPKind
    var parameters: OTPParameters = .standard
    var counter: UInt64?
    var lastStep: Int64?
    var window: Int?
    /// Imported recovery codes (scratch codes); nil: the daemon makes 8 new ones.
    var importedCodes: [String]?
    var replace = false

    func message() throws(CLIError) -> WireMessage {
        var message = try DaemonClient.request(.adminEnroll, account: .other(user))
        do {
            try message.append(.secret, string: Base32.encode(secret))
            try message.append(.otpKind, string: kind.rawValue)
            try message.append(.algorithm, string: parameters.algorithm.rawValue)
            message.append(.digits, uint8: UInt8(parameters.digits))
            message.append(.period, uint32: UInt32(parameters.period))
            if let counter { message.append(.counter, uint64: counter) }
            if let lastStep { message.append(.lastStep, int64: lastStep) }
            if let window { message.append(.window, uint32: UInt32(clamping: window)) }
            if let importedCodes {
                message.append(.importedCodes, bool: true)
                for code in importedCodes { try message.append(.recoveryCode, string: code) }
            }
            message.append(.replace, bool: replace)
        } catch {
            throw CLIError(.failure, "the request for \(printable(user)) is too large")
        }
        return message
    }

    /// Sends it; answers the new recovery codes (none when imported) and how many the account has.
    func send(_ client: DaemonClient) throws(CLIError) -> (codes: [String], left: Int) {
        var request = try message()
        defer { request.wipeSecrets() }
        let response = try client.send(request, account: .other(user))
        return (response.allStrings(.recoveryCode), Int(response.uint32(.recoveryCodesLeft) ?? 0))
    }
}

extension WireMessage {
    /// Overwrites the secret and recovery codes of a request once it has been sent.
    mutating func wipeSecrets() {
        for index in fields.indices where [FieldTag.secret.rawValue, FieldTag.recoveryCode.rawValue, FieldTag.code.rawValue]
            .contains(fields[index].tag) {
            for byte in fields[index].value.indices { fields[index].value[byte] = 0 }
        }
    }
}

/// Only root reads other users' files and chooses their keys.
func requireRoot(_ what: String) throws(CLIError) {
    guard geteuid() == 0 else { throw CLIError(.permissionDenied, "\(what) must be run as root") }
}

struct AdminEnroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Give a user a key you provide, such as a hardware token's (root only).",
        discussion: """
            Reads the token's secret, in base32, from one line of standard input (never from \
            the command line, where other users could see it) and turns two-factor \
            authentication on for USER with it. --hotp for counter-based tokens (RFC 4226; \
            --counter is the counter of the token's next code, 0 for a new token), --totp for \
            time-based ones (--period). 8 new recovery codes are printed for you to hand over. \
            A user who already has two-factor authentication is left alone (exit status 5) \
            unless --replace is given. Root only.

            \(ExitStatusHelp.table)

            EXAMPLE
              printf '%s\\n' JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP | sudo twofactor admin enroll alice --hotp --secret-stdin
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The user's login name.") var user: String
    @Flag(help: "Counter-based (HOTP) or time-based (TOTP) codes.") var kind: KindFlag
    @Flag(name: .customLong("secret-stdin"), help: "Read the base32 secret from one line of standard input (required).")
    var secretStdin = false
    @Option(help: "HOTP: the counter of the token's next code.") var counter: UInt64 = 0
    @Option(help: "TOTP: seconds per code.") var period: Int = 30
    @Option(help: "Digits per code (6 to 8).") var digits: Int = 6
    @Option(help: "SHA1, SHA256 or SHA512.") var algorithm: String = "SHA1"
    @Flag(help: "Replace an existing enrollment of the user.") var replace = false

    enum KindFlag: EnumerableFlag { case hotp, totp }

    func validate() throws {
        try validateUserName(user)
        guard secretStdin else { throw ValidationError("--secret-stdin is required: the secret is read from standard input") }
    }

    func run() throws {
        try requireRoot("twofactor admin enroll")
        guard let algorithm = OTPAlgorithm(rawValue: algorithm.uppercased()) else {
            throw CLIError(.usage, "--algorithm must be SHA1, SHA256 or SHA512")
        }
        let parameters: OTPParameters
        do {
            parameters = try OTPParameters(algorithm: algorithm, digits: digits, period: period)
        } catch {
            throw CLIError(.usage, "\(error)")
        }
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw CLIError(.failure, "no secret on standard input")
        }
        var secret: [UInt8]
        do {
            secret = try Base32.decode(line)
        } catch {
            throw CLIError(.failure, "the secret is not base32: \(error)")
        }
        defer { ConstantTime.zero(&secret) }
        let request = AdminEnrollRequest(user: user, secret: secret, kind: kind == .hotp ? .hotp : .totp,
                                         parameters: parameters, counter: kind == .hotp ? counter : nil, replace: replace)
        let (codes, _) = try request.send(global.client)
        if global.json {
            JSON.object([("user", .string(user)), ("type", .string(request.kind.rawValue)),
                         ("recovery_codes", .array(codes.map(JSON.string)))]).print()
        } else {
            print("""
                Two-factor authentication is now on for \(printable(user)) with the \(request.kind == .hotp ? "counter-based (HOTP)" : "time-based (TOTP)") key you gave.

                Recovery codes for \(printable(user)) (hand them over safely; each works once):

                \(RecoveryCodeText.list(codes))
                """)
        }
    }
}
