// What a code looks like, as bytes: the one definition of the recovery alphabet, the longest
// answer that can be a code, and the rules that pick a code out of what a person typed. Compiled
// twice, like Wire.swift: as part of TwoFactorCore (CodeInput, RecoveryCodes) and, through a
// symlink, inside the Embedded Swift PAM module (try_first_pass, forward_pass, the pre-check).
// So it uses only what Embedded Swift has: no Foundation, no Character, no existentials.

public enum CodeShape {
    /// Longest answer considered at all: longer input is refused before anything else looks at
    /// it (the module does not even send it).
    public static let maxLength = 64

    /// Recovery codes use 30 characters nobody confuses when reading or typing: no 0/O, 1/I/L,
    /// and no U (V/U). Either case is accepted when typed.
    public static let recoveryAlphabet: StaticString = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
    /// 12 characters from 30: 12 * log2(30) = 58.9 bits each.
    public static let recoveryLength = 12
    /// Characters per printed group ("ABCD-EFGH-JKMN").
    public static let recoveryGroupLength = 4
    /// Length of a recovery code in its printed form: the groups and the dashes between them.
    public static let printedRecoveryLength = recoveryLength + recoveryLength / recoveryGroupLength - 1

    public static var recoveryAlphabetBytes: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: recoveryAlphabet.utf8Start, count: recoveryAlphabet.utf8CodeUnitCount)
    }

    public static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// Spaces and dashes may separate the groups of a code; they are not part of it.
    public static func isSeparator(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "-") }

    /// The recovery-alphabet character `byte` stands for (ASCII letters uppercased), or nil.
    public static func recoveryCharacter(_ byte: UInt8) -> UInt8? {
        let upper = byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte
        return recoveryAlphabetBytes.contains(upper) ? upper : nil
    }

    /// Obviously not a code: empty, longer than any code, or anything but printable ASCII
    /// (control characters, non-UTF-8 or non-ASCII bytes). The module refuses such answers
    /// itself, with the same message as a wrong code; the daemon judges everything else.
    public static func isPlausibleCode(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard bytes.count > 0, bytes.count <= maxLength else { return false }
        return bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }

    /// try_first_pass: whether PAM_AUTHTOK is a code rather than an earlier module's password:
    /// `digits` digits, or 12 recovery-code characters, ignoring spaces and dashes.
    public static func looksLikeCode(_ bytes: UnsafeBufferPointer<UInt8>, digits: Int) -> Bool {
        var digitCount = 0
        var recoveryCount = 0
        for byte in bytes where !isSeparator(byte) {
            if isDigit(byte) { digitCount += 1 }
            guard recoveryCharacter(byte) != nil || isDigit(byte) else { return false }
            recoveryCount += 1
        }
        if digitCount == recoveryCount && digitCount == digits { return true }
        return recoveryCount == recoveryLength
            && bytes.allSatisfy { $0 != UInt8(ascii: "0") && $0 != UInt8(ascii: "1") }
    }

    /// forward_pass: where the code starts in password+code. The code is the last `digits`
    /// characters when they are all digits, else a recovery code in its printed form
    /// XXXX-XXXX-XXXX at the very end; nil when the answer ends in neither.
    public static func codeSplit(_ answer: UnsafeBufferPointer<UInt8>, digits: Int) -> Int? {
        if answer.count >= digits {
            var allDigits = true
            for index in (answer.count - digits)..<answer.count where !isDigit(answer[index]) { allDigits = false }
            if allDigits { return answer.count - digits }
        }
        if answer.count >= printedRecoveryLength {
            let start = answer.count - printedRecoveryLength
            var matches = true
            for offset in 0..<printedRecoveryLength {
                let byte = answer[start + offset]
                let ok = (offset + 1) % (recoveryGroupLength + 1) == 0
                    ? byte == UInt8(ascii: "-") : recoveryCharacter(byte) != nil
                if !ok { matches = false }
            }
            if matches { return start }
        }
        return nil
    }
}
