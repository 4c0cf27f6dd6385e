// The ~/.google_authenticator file of google-authenticator-libpam, read for
// `twofactor admin import-google-authenticator`. Layout (what the `google-authenticator` command
// writes and pam_google_authenticator rewrites):
//   line 1     the base32 secret
//   `" KEY ...` option lines: RATE_LIMIT n s [timestamps], WINDOW_SIZE n, DISALLOW_REUSE [steps],
//              TOTP_AUTH, HOTP_COUNTER n, STEP_SIZE n, TIME_SKEW n, RESETTING_TIME_SKEW ...
//   the rest   unused emergency scratch codes, 8 digits each (used ones are deleted from the file)
// Every line ends with a newline; a file that does not was cut short.

public enum GoogleAuthenticatorFileError: Error, Equatable, CustomStringConvertible {
    case truncated(String)
    case notASecretFile(String)

    public var description: String {
        switch self {
        case .truncated(let why): return "the file is truncated: \(why)"
        case .notASecretFile(let why): return "not a google-authenticator secret file: \(why)"
        }
    }
}

public struct GoogleAuthenticatorFile: Sendable, Equatable {
    /// pam_google_authenticator refuses larger files; so do we.
    public static let maxSize = 64 * 1024
    /// The shortest secret google-authenticator ever wrote: 80 bits, 16 base32 characters.
    public static let minSecretBytes = 10
    /// Scratch codes have 8 digits.
    public static let scratchCodeLength = 8
    /// google-authenticator makes at most 10 scratch codes.
    public static let maxScratchCodes = 10

    public var secret: [UInt8]
    /// TOTP_AUTH present, or no HOTP_COUNTER: time-based. HOTP_COUNTER: counter-based.
    public var kind: OTPKind
    /// HOTP_COUNTER: the next counter pam_google_authenticator accepts.
    public var hotpCounter: UInt64?
    /// STEP_SIZE, default 30 seconds.
    public var stepSize: Int
    /// WINDOW_SIZE, default 3: TOTP accepts steps -(n-1)/2 ... n/2 around now; HOTP the counters
    /// counter ... counter+n-1.
    public var windowSize: Int
    /// DISALLOW_REUSE: nil when absent (reuse allowed), else the steps already used.
    public var usedSteps: [Int64]?
    /// RATE_LIMIT n s: at most n attempts in s seconds.
    public var rateLimitAttempts: Int?
    public var rateLimitSeconds: Int?
    /// TIME_SKEW n: the clock skew pam_google_authenticator learned (noskew off), in steps.
    public var timeSkew: Int?
    /// The scratch codes not used yet, in file order.
    public var scratchCodes: [String]
    /// Option lines this parser does not interpret (reported as not carried over).
    public var otherOptions: [String]

    public static func == (a: GoogleAuthenticatorFile, b: GoogleAuthenticatorFile) -> Bool {
        a.secret == b.secret && a.kind == b.kind && a.hotpCounter == b.hotpCounter && a.stepSize == b.stepSize
            && a.windowSize == b.windowSize && a.usedSteps == b.usedSteps && a.rateLimitAttempts == b.rateLimitAttempts
            && a.rateLimitSeconds == b.rateLimitSeconds && a.timeSkew == b.timeSkew && a.scratchCodes == b.scratchCodes
            && a.otherOptions == b.otherOptions
    }

    public init(parsing bytes: [UInt8]) throws(GoogleAuthenticatorFileError) {
        guard !bytes.isEmpty else { throw .truncated("it is empty") }
        guard bytes.count <= Self.maxSize else { throw .notASecretFile("it is larger than \(Self.maxSize) bytes") }
        guard let text = String(validating: bytes, as: UTF8.self), bytes.allSatisfy({ $0 != 0 }) else {
            throw .notASecretFile("it is not text")
        }
        guard bytes.last == UInt8(ascii: "\n") else { throw .truncated("the last line has no end") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // after the final newline

        let secretLine = lines.removeFirst()
        guard !secretLine.isEmpty, secretLine.utf8.allSatisfy(Self.isBase32Character),
              let secret = try? Base32.decode(secretLine) else {
            throw .notASecretFile("the first line is not a base32 secret")
        }
        guard secret.count >= Self.minSecretBytes else {
            throw .truncated("the secret has only \(secretLine.utf8.count) characters")
        }
        self.secret = secret
        kind = .totp
        stepSize = 30
        windowSize = 3
        scratchCodes = []
        otherOptions = []
        var sawTOTP = false

        for line in lines {
            if line.hasPrefix("\" ") {
                let words = line.dropFirst(2).split(separator: " ").map(String.init)
                guard let key = words.first else { throw .notASecretFile("an empty option line") }
                let values = Array(words.dropFirst())
                switch key {
                case "TOTP_AUTH":
                    sawTOTP = true
                case "HOTP_COUNTER":
                    guard values.count == 1, let counter = UInt64(values[0]) else { throw Self.bad(line) }
                    hotpCounter = counter
                case "STEP_SIZE":
                    guard values.count == 1, let step = Int(values[0]), (1...60).contains(step) else { throw Self.bad(line) }
                    stepSize = step
                case "WINDOW_SIZE":
                    guard values.count == 1, let window = Int(values[0]), (1...100).contains(window) else { throw Self.bad(line) }
                    windowSize = window
                case "DISALLOW_REUSE":
                    var steps: [Int64] = []
                    for value in values {
                        guard let step = Int64(value), step >= 0 else { throw Self.bad(line) }
                        steps.append(step)
                    }
                    usedSteps = steps
                case "RATE_LIMIT":
                    // n s, then the timestamps of the recent attempts (state, not a setting).
                    guard values.count >= 2, let attempts = Int(values[0]), let seconds = Int(values[1]),
                          attempts >= 1, seconds >= 1, values.dropFirst(2).allSatisfy({ Int64($0) != nil }) else {
                        throw Self.bad(line)
                    }
                    rateLimitAttempts = attempts
                    rateLimitSeconds = seconds
                case "TIME_SKEW":
                    guard values.count == 1, let skew = Int(values[0]) else { throw Self.bad(line) }
                    timeSkew = skew
                default:
                    otherOptions.append(String(line.dropFirst(2).prefix(80)))
                }
            } else if line.utf8.count == Self.scratchCodeLength, line.utf8.allSatisfy(CodeShape.isDigit) {
                scratchCodes.append(line)
            } else if line.utf8.allSatisfy(CodeShape.isDigit) && !line.isEmpty && line.utf8.count < Self.scratchCodeLength {
                throw .truncated("a scratch code has only \(line.utf8.count) digits")
            } else {
                throw .notASecretFile("a line is neither an option nor an 8-digit scratch code")
            }
        }
        if hotpCounter != nil && !sawTOTP { kind = .hotp }
        if hotpCounter != nil && sawTOTP { throw .notASecretFile("it has both TOTP_AUTH and HOTP_COUNTER") }
    }

    private static func bad(_ line: String) -> GoogleAuthenticatorFileError {
        .notASecretFile("the option line \"\(line.dropFirst(2).prefix(40))\" is malformed")
    }

    private static func isBase32Character(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || (byte >= UInt8(ascii: "2") && byte <= UInt8(ascii: "7"))
    }

    /// WINDOW_SIZE as steps either side of now (TOTP): google-authenticator accepts -(n-1)/2 ... n/2;
    /// n/2 either side covers that (one more step before now when n is even).
    public var totpStepsEitherSide: Int { windowSize / 2 }
    /// WINDOW_SIZE as counters looked ahead past the expected one (HOTP).
    public var hotpLookAhead: Int { windowSize - 1 }
    /// The highest step pam_google_authenticator recorded as used: codes up to it are replays.
    public var lastUsedStep: Int64? { usedSteps?.max() }
}
