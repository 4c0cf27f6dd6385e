// One-time recovery codes for when the phone is lost.

public enum RecoveryCodes {
    public static let count = 8
    /// 30 characters nobody confuses when reading or typing: no 0/O, 1/I/L, and no U (V/U).
    public static let alphabet: [Character] = Array("23456789ABCDEFGHJKMNPQRSTVWXYZ")
    /// 12 characters from 30: 12 * log2(30) = 58.9 bits each.
    public static let length = 12
    /// Characters per displayed group ("ABCD-EFGH-JKMN").
    public static let groupLength = 4

    static let alphabetASCII: [UInt8] = alphabet.map { $0.asciiValue! }

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
            var byte = UInt8(scalar.value)
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "-") { continue }
            if byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") { byte -= 32 }
            guard alphabetASCII.contains(byte), output.count < length else { return nil }
            output.append(byte)
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
