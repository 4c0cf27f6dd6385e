// `twofactor enable`: start an enrollment, show the QR code and the key, confirm with a code
// from the app, show the recovery codes once.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

struct Enable: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn on two-factor authentication for your account.",
        discussion: """
            Shows a QR code for your authenticator app (Google Authenticator, FreeOTP, Aegis, \
            1Password, ...), and the same key in groups of four letters for typing by hand. Scan \
            it, then type the 6-digit code the app shows at the prompt "Code from the app:". A \
            wrong code says "\(Product.incorrectCodeMessage)" and asks again (up to 5 \
            tries). Ctrl-C or end of input (Ctrl-D) cancels: nothing is turned on.

            When the code is right, two-factor authentication is on and 8 recovery codes are \
            shown, once. Each recovery code works once in place of a code from the app, for when \
            the phone is lost. Save them in a safe place: they will not be shown again.

            The QR code is drawn with Unicode half blocks when the locale uses UTF-8, else with \
            ASCII; --qr forces one or turns it off. --qr-image FILE also writes it as a PNG (or \
            SVG, by the .svg extension or --qr-format) readable only by you; delete the file \
            once scanned, since it contains your secret key. If the enrollment is cancelled or \
            fails, the file is removed.

            With --json, standard output gets two JSON lines (JSON Lines). The first, written \
            before the code is read so a provisioning script can compute the code, holds \
            {"user", "secret", "uri", "issuer", "algorithm", "digits", "period"}; the second, \
            after the confirmation, holds the same with "recovery_codes". Nothing secret is \
            ever written to standard error (in any mode); with --json the QR code is drawn on \
            the terminal itself (/dev/tty) when there is one and --code-stdin is not given. \
            With --code-stdin the code is read from one line of standard input without a \
            prompt and only one try.

            If two-factor authentication is already on, the command fails with exit status 5; \
            run 'twofactor disable' first to move it to a new phone. Running 'twofactor enable' \
            again before confirming replaces the unconfirmed key.

            --hotp sets up a counter-based (HOTP, RFC 4226) key instead of a time-based one: the \
            app shows a new code each time you ask for one, and each code works once, in order. \
            The JSON then also holds "type": "hotp" and "counter" (where the key starts). \
            Hardware tokens with their own key are enrolled by root: 'twofactor admin enroll'.

            \(ExitStatusHelp.table)

            EXAMPLES
              twofactor enable
              twofactor enable --qr-image ~/twofactor.png
              twofactor enable --qr=none --json --code-stdin
            """
    )

    static let maxTries = 5

    @OptionGroup var global: GlobalOptions
    @OptionGroup var input: CodeInputOptions

    @Option(name: .long, help: "How to draw the QR code in the terminal: auto, unicode, ascii or none.")
    var qr: QRTerminalStyle = .auto

    @Option(name: .customLong("qr-image"),
            help: ArgumentHelp("Also write the QR code to this file (mode 0600).", valueName: "file"),
            completion: .file())
    var qrImage: String?

    @Option(name: .customLong("qr-format"), help: "Image format for --qr-image: png or svg (default: by the file name's extension, else png).")
    var qrFormat: QRImageFormat?

    @Option(name: .customLong("qr-scale"), help: "Pixels per QR module in the image (1-64).")
    var qrScale: Int = QRImage.defaultScale

    @Flag(name: .long, help: "Replace the --qr-image file if it exists.")
    var force = false

    @Flag(name: .long, help: "A counter-based (HOTP) key instead of a time-based (TOTP) one.")
    var hotp = false

    func validate() throws {
        guard (1...64).contains(qrScale) else { throw ValidationError("--qr-scale must be between 1 and 64") }
        if qrImage == nil && (qrFormat != nil || force) {
            throw ValidationError("--qr-format and --force only apply with --qr-image FILE")
        }
        if let qrImage, qrImage.isEmpty { throw ValidationError("--qr-image needs a file name") }
    }

    func run() throws {
        let client = global.client
        let account = try Account.caller()
        Terminal.catchInterrupts()

        // Create the image file first: a bad path should fail before any enrollment starts.
        let imageFile = try qrImage.map { (path: String) throws(CLIError) in try SecretFile(path: path, force: force) }

        let begun: WireMessage
        do {
            var request = try DaemonClient.request(.enrollBegin, account: account)
            if hotp { try? request.append(.otpKind, string: OTPKind.hotp.rawValue) }
            begun = try client.send(request, account: account)
        } catch {
            imageFile?.discard()
            throw error
        }

        let enrollment: PendingEnrollment
        let recoveryCodes: [String]
        do {
            enrollment = try PendingEnrollment(begun, account: account)
            try present(enrollment, imageFile: imageFile)
            recoveryCodes = try confirm(enrollment, client: client, account: account)
        } catch {
            imageFile?.discard()
            // Whatever went wrong, leave no half-made enrollment behind. A failure to cancel
            // is not worth a second error: an unconfirmed enrollment enables nothing.
            if error.status != .alreadyEnrolled {
                _ = try? client.send(DaemonClient.request(.enrollCancel, account: account))
                if error.status == .interrupted || error.message == PendingEnrollment.cancelledByEOF {
                    Terminal.writeError("Enrollment cancelled; two-factor authentication was not turned on.\n")
                }
            }
            throw error
        }
        finish(enrollment, recoveryCodes: recoveryCodes, account: account)
    }

    private func present(_ enrollment: PendingEnrollment, imageFile: SecretFile?) throws(CLIError) {
        let matrix = try QRMatrix(encoding: enrollment.uri)
        if let imageFile {
            let format = qrFormat ?? QRImageFormat.forPath(imageFile.path)
            try imageFile.write(QRImage.encode(matrix, format: format, scale: qrScale))
        }

        let style = qr == .auto ? QRTerminalStyle.detect() : qr
        if global.json {
            // The secret goes only where the caller asked for it: the first of two JSON lines
            // on stdout, flushed now so a script can compute the code. Never stderr, which is
            // often logged. The drawing, for a person who will type the code, goes to the
            // terminal itself.
            print(enrollment.json(recoveryCodes: nil, compact: true))
            fflush(nil)
            if style != .none && !input.codeStdin {
                let drawing = QRTerminalRenderer.render(matrix, style: style, colors: false) + "\n"
                if !Terminal.writeToTerminal(drawing) {
                    Terminal.writeError("(No terminal to draw the QR code on: the key is in the JSON on standard output; --qr-image FILE writes the QR code to a file.)\n")
                }
            }
            return
        }

        var text = ""
        if style != .none {
            text += "Scan this QR code with your authenticator app:\n\n"
            text += QRTerminalRenderer.render(matrix, style: style, colors: QRTerminalRenderer.colorsWanted()) + "\n\n"
            let needed = QRTerminalRenderer.columns(matrix, style: style)
            if let columns = Terminal.outputColumns, columns < needed {
                text += "(The terminal is \(columns) columns wide and the QR code needs \(needed): widen the "
                text += "window, or use --qr-image FILE.)\n\n"
            }
            text += "Or enter this key by hand"
        } else {
            text += "Enter this key in your authenticator app"
        }
        text += " (account \(printable(enrollment.account)), issuer \(printable(enrollment.issuer))):\n\n"
        text += "    \(enrollment.groupedSecret)\n\n"
        if let counter = enrollment.counter {
            text += "Choose these settings in the app: counter-based, \(enrollment.algorithm), "
            text += "\(enrollment.digits) digits, counter \(counter).\n\n"
        } else if !enrollment.hasStandardParameters {
            text += "Choose these settings in the app: time-based, \(enrollment.algorithm), "
            text += "\(enrollment.digits) digits, every \(enrollment.period) seconds.\n\n"
        }
        text += "otpauth URI: \(enrollment.uri)\n"
        if let imageFile {
            text += "QR code written to \(imageFile.path) (delete it after scanning: it contains your key).\n"
        }
        print(text)
        fflush(nil)
    }

    /// Reads codes until one confirms the enrollment; returns the recovery codes.
    private func confirm(_ enrollment: PendingEnrollment, client: DaemonClient,
                         account: Account) throws(CLIError) -> [String] {
        let source = input.source
        let tries = source.attempts(Enable.maxTries)
        var attempt = 0
        while true {
            attempt += 1
            guard var code = try source.next(prompt: "Code from the app: ", echo: true) else {
                throw CLIError(.failure, PendingEnrollment.cancelledByEOF)
            }
            defer { ConstantTime.zero(&code) }
            let problem = codeShapeProblem(code, digits: [enrollment.digits])
            var outcome: CLIError
            if let problem {
                outcome = CLIError(.wrongCode, "\(Product.incorrectCodeMessage) (\(problem))")
            } else {
                var request = try DaemonClient.request(.enrollConfirm, account: account, code: code)
                let response = try client.send(request)
                request.wipeCodes()
                if response.status == .ok {
                    return response.allStrings(.recoveryCode)
                }
                outcome = CLIError.from(response: response, account: account)
                guard outcome.status == .wrongCode else { throw outcome }
            }
            if attempt >= tries {
                if tries > 1 {
                    outcome = CLIError(.wrongCode, "\(outcome.message).\nToo many incorrect codes; enrollment cancelled. Check that the phone's clock is set automatically, then run 'twofactor enable' again")
                }
                throw outcome
            }
            Terminal.writeError("\(outcome.message). Try again (\(tries - attempt) tr\(tries - attempt == 1 ? "y" : "ies") left).\n")
        }
    }

    private func finish(_ enrollment: PendingEnrollment, recoveryCodes: [String], account: Account) {
        if recoveryCodes.isEmpty {
            Terminal.writeError("twofactor: warning: the daemon sent no recovery codes; run 'twofactor recovery-codes' for a set.\n")
        }
        if global.json {
            print(enrollment.json(recoveryCodes: recoveryCodes, compact: true))  // the second JSON line
            return
        }
        print(RecoveryCodeText.enabled(user: account.name, codes: recoveryCodes))
    }
}

/// What enrollBegin answered, checked for consistency before anything is shown.
struct PendingEnrollment {
    static let cancelledByEOF = "no code was entered"

    let secret: String
    let secretBytes: [UInt8]
    let uri: String
    let digits: Int
    let period: Int
    let algorithm: String
    let issuer: String
    let account: String
    /// HOTP: the counter the key starts at; nil for TOTP.
    let counter: UInt64?

    init(_ response: WireMessage, account: Account) throws(CLIError) {
        guard let secret = response.string(.secret), let uri = response.string(.uri) else {
            throw CLIError(.failure, "the two-factor daemon's answer lacks the secret or the URI")
        }
        let parsed: OTPAuthURI
        do {
            parsed = try OTPAuthURI(parsing: uri)
        } catch {
            throw CLIError(.failure, "the two-factor daemon sent an invalid otpauth URI: \(error)")
        }
        let decoded: [UInt8]
        do {
            decoded = try Base32.decode(secret)
        } catch {
            throw CLIError(.failure, "the two-factor daemon sent an invalid secret: \(error)")
        }
        // The QR code and the typed key must set up the same thing.
        guard ConstantTime.equals(decoded, parsed.secret) else {
            throw CLIError(.failure, "the two-factor daemon's secret and URI disagree")
        }
        self.secret = Base32.encode(decoded)
        self.secretBytes = decoded
        self.uri = uri
        self.digits = response.uint8(.digits).map(Int.init) ?? parsed.parameters.digits
        self.period = response.uint32(.period).map(Int.init) ?? parsed.parameters.period
        self.algorithm = response.string(.algorithm) ?? parsed.parameters.algorithm.rawValue
        self.issuer = response.string(.issuer) ?? parsed.issuer
        self.account = parsed.account.isEmpty ? account.name : parsed.account
        self.counter = parsed.hotpCounter
    }

    var groupedSecret: String { Base32.grouped(secretBytes) }

    var hasStandardParameters: Bool {
        digits == 6 && period == 30 && algorithm.uppercased() == "SHA1"
    }

    func json(recoveryCodes: [String]?, compact: Bool) -> String {
        var members: [(String, JSON)] = [
            ("user", .string(account)),
            ("secret", .string(secret)),
            ("uri", .string(uri)),
            ("issuer", .string(issuer)),
            ("algorithm", .string(algorithm)),
            ("digits", .int(Int64(digits))),
            ("period", .int(Int64(period))),
        ]
        if let counter {
            members.append(("type", .string(OTPKind.hotp.rawValue)))
            members.append(("counter", .int(Int64(clamping: counter))))
        }
        if let recoveryCodes { members.append(("recovery_codes", .array(recoveryCodes.map(JSON.string)))) }
        let value = JSON.object(members)
        return compact ? value.compact() : value.rendered()
    }
}

enum RecoveryCodeText {
    static func list(_ codes: [String]) -> String {
        codes.map { "    " + printable($0) }.joined(separator: "\n")
    }

    static let saveAdvice = """
        Each recovery code works once, in place of a code from the app, if you lose your phone.
        Save them in a safe place (a password manager, or on paper): they will not be shown again.
        """

    static func enabled(user: String, codes: [String]) -> String {
        """

        Two-factor authentication is now enabled for \(printable(user)).
        From now on, logins ask for a code from the app after your password.

        Your recovery codes:

        \(list(codes))

        \(saveAdvice)
        """
    }
}
