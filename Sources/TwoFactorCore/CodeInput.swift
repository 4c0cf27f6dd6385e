// Classification of what a person typed at the prompt: a TOTP code, a recovery code, or junk.

public enum CodeInputError: Error, Equatable, CustomStringConvertible {
    case empty
    case tooLong
    case notUTF8
    case controlCharacter
    case wrongLength(expected: Int, got: Int)
    case invalidCharacters

    public var description: String {
        switch self {
        case .empty: return "no code was entered"
        case .tooLong: return "the input is too long to be a code (at most \(CodeInput.maxLength) bytes)"
        case .notUTF8: return "the input is not valid text (not UTF-8)"
        case .controlCharacter: return "the input contains a control character"
        case .wrongLength(let expected, let got):
            return "wrong length: expected \(expected) characters, got \(got)"
        case .invalidCharacters:
            return "the input is neither a numeric code nor a recovery code (recovery codes use 2-9 and A-Z without I, L, O, U)"
        }
    }
}

public enum CodeInput: Equatable, Sendable {
    /// Exactly `digits` ASCII digits, spaces removed.
    case totp(String)
    /// A normalized recovery code (RecoveryCodes.normalize).
    case recovery(String)
    case invalid(CodeInputError)

    public static let maxLength = CodeShape.maxLength

    /// Classifies raw bytes as typed by a person. Never traps: every byte sequence maps to a case.
    public static func classify(_ bytes: [UInt8], digits: Int) -> CodeInput {
        guard !bytes.isEmpty else { return .invalid(.empty) }
        guard bytes.count <= maxLength else { return .invalid(.tooLong) }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .invalid(.notUTF8) }
        // NUL and other C0/C1 controls (including tab and newline) never belong in a code.
        if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return .invalid(.controlCharacter)
        }

        var digitBytes: [UInt8] = []
        digitBytes.reserveCapacity(bytes.count)
        var allDigits = true
        for byte in bytes where byte != UInt8(ascii: " ") {
            if CodeShape.isDigit(byte) {
                digitBytes.append(byte)
            } else {
                allDigits = false
            }
        }
        if allDigits && digitBytes.isEmpty { return .invalid(.empty) }  // only spaces
        if allDigits && digitBytes.count == digits {
            return .totp(String(decoding: digitBytes, as: UTF8.self))
        }
        // A recovery code may, rarely, be all digits 2-9, so try it before calling a length wrong.
        if let recovery = RecoveryCodes.normalize(text) { return .recovery(recovery) }
        // Scratch codes imported from google-authenticator are kept as recovery codes: 8 digits.
        if allDigits && digitBytes.count == GoogleAuthenticatorFile.scratchCodeLength {
            return .recovery(String(decoding: digitBytes, as: UTF8.self))
        }
        if allDigits { return .invalid(.wrongLength(expected: digits, got: digitBytes.count)) }

        // Letters from the recovery alphabet but the wrong count: say so, rather than "invalid".
        var recoveryCharacters = 0
        for byte in bytes where !CodeShape.isSeparator(byte) {
            guard CodeShape.recoveryCharacter(byte) != nil else { return .invalid(.invalidCharacters) }
            recoveryCharacters += 1
        }
        return .invalid(.wrongLength(expected: RecoveryCodes.length, got: recoveryCharacters))
    }
}
