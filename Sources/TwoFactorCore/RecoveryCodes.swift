// One-time recovery codes for when the phone is lost.

public enum RecoveryCodes {
    public static let count = 8
    /// The alphabet, length and grouping are CodeShape's (shared with the PAM module).
    public static let alphabet: [Character] = alphabetASCII.map { Character(Unicode.Scalar($0)) }
    public static let length = CodeShape.recoveryLength
    public static let groupLength = CodeShape.recoveryGroupLength

    static let alphabetASCII = Array(CodeShape.recoveryAlphabetBytes)

    /// `count` distinct codes in display form.
    public static func generate(count: Int = RecoveryCodes.count) -> [String] {
        var seen = Set<String>()
        var codes: [String] = []
        codes.reserveCapacity(max(count, 0))
        while codes.count < count {
            var characters: [UInt8] = []
            characters.reserveCapacity(length)
            for _ in 0..<length {
                characters.append(alphabetASCII[SecureRandom.uniform(alphabetASCII.count)])
            }
            let normalized = String(decoding: characters, as: UTF8.self)
            if seen.insert(normalized).inserted {
                codes.append(display(normalized))
            }
        }
        return codes
    }

    /// Uppercases (ASCII only), drops spaces and dashes; nil unless exactly `length` characters,
    /// all from `alphabet`. Look-alikes (0, O, 1, I, L, U) are rejected rather than guessed.
    public static func normalize(_ input: String) -> String? {
        var output: [UInt8] = []
        output.reserveCapacity(length)
        for scalar in input.unicodeScalars {
            guard scalar.isASCII else { return nil }
            let byte = UInt8(scalar.value)
            if CodeShape.isSeparator(byte) { continue }
            guard let character = CodeShape.recoveryCharacter(byte), output.count < length else { return nil }
            output.append(character)
        }
        guard output.count == length else { return nil }
        return String(decoding: output, as: UTF8.self)
    }

    /// HMAC-SHA-256(key, normalized UTF-8): what the store keeps instead of the code.
    public static func hash(normalized: String, key: [UInt8]) -> [UInt8] {
        HMAC.sha256(Array(normalized.utf8), key: key)
    }

    /// Groups of 4 joined by dashes: "ABCDEFGHJKMN" -> "ABCD-EFGH-JKMN".
    public static func display(_ normalized: String) -> String {
        var output = ""
        output.reserveCapacity(normalized.count + normalized.count / groupLength)
        for (index, character) in normalized.enumerated() {
            if index > 0 && index % groupLength == 0 { output.append("-") }
            output.append(character)
        }
        return output
    }
}
