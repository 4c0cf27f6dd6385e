// Base32 (RFC 4648 section 6): the encoding authenticator apps use for secrets.

public enum Base32Error: Error, Equatable, CustomStringConvertible {
    /// `position` counts characters of the input from 1.
    case invalidCharacter(Character, position: Int)
    case invalidLength
    case empty

    public var description: String {
        switch self {
        case .invalidCharacter(let character, let position):
            return "invalid character \(Base32Error.describe(character)) at position \(position): base32 uses A-Z and 2-7"
        case .invalidLength:
            return "invalid length: this many base32 characters cannot encode whole bytes (a character is missing or extra)"
        case .empty:
            return "empty: no base32 characters were given"
        }
    }

    /// Quotes printable characters; names invisible ones by code point so a message never
    /// contains raw control bytes.
    static func describe(_ character: Character) -> String {
        let scalars = character.unicodeScalars
        if scalars.count == 1, let scalar = scalars.first,
            scalar.properties.generalCategory == .control || scalar.properties.isWhitespace
                || scalar.properties.generalCategory == .format
        {
            return "U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
        }
        return "'\(character)'"
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

public enum Base32 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    public static func encode(_ bytes: [UInt8], padding: Bool = false) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 4) / 5 * 8)
        var buffer: UInt32 = 0
        var bitCount = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bitCount += 8
            while bitCount >= 5 {
                bitCount -= 5
                output.append(alphabet[Int((buffer >> UInt32(bitCount)) & 0x1f)])
            }
        }
        if bitCount > 0 {
            output.append(alphabet[Int((buffer << UInt32(5 - bitCount)) & 0x1f)])
        }
        if padding {
            while output.count % 8 != 0 { output.append(UInt8(ascii: "=")) }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Lenient decoding for what people paste or type: lowercase, spaces (and tabs/newlines),
    /// dashes, missing or extra trailing '='. Anything else is an error naming the character and
    /// its position. Non-zero leftover bits in the last character are ignored, as most decoders do.
    public static func decode(_ text: String) throws(Base32Error) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count * 5 / 8)
        var buffer: UInt32 = 0
        var bitCount = 0
        var significant = 0
        var paddingStarted = false
        var position = 0
        for character in text {
            position += 1
            if character == " " || character == "-" || character == "\t" || character == "\n" || character == "\r"
                || character == "\r\n"
            {
                continue
            }
            if character == "=" {
                paddingStarted = true
                continue
            }
            guard !paddingStarted, let value = Self.value(of: character) else {
                throw .invalidCharacter(character, position: position)
            }
            significant += 1
            buffer = (buffer << 5) | UInt32(value)
            bitCount += 5
            if bitCount >= 8 {
                bitCount -= 8
                output.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bitCount)))
                buffer &= (1 << UInt32(bitCount)) - 1
            }
        }
        guard significant > 0 else { throw .empty }
        // 8 characters carry 5 bytes; a final group of 1, 3 or 6 characters cannot end on a byte.
        switch significant % 8 {
        case 1, 3, 6: throw .invalidLength
        default: return output
        }
    }

    /// Unpadded encoding in groups of 4 separated by spaces, for people to read or type.
    public static func grouped(_ bytes: [UInt8]) -> String {
        let plain = Array(encode(bytes).utf8)
        var output: [UInt8] = []
        output.reserveCapacity(plain.count + plain.count / 4)
        for (index, byte) in plain.enumerated() {
            if index > 0 && index % 4 == 0 { output.append(UInt8(ascii: " ")) }
            output.append(byte)
        }
        return String(decoding: output, as: UTF8.self)
    }

    static func value(of character: Character) -> UInt8? {
        guard let ascii = character.asciiValue else { return nil }
        switch ascii {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return ascii - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return ascii - UInt8(ascii: "a")
        case UInt8(ascii: "2")...UInt8(ascii: "7"): return ascii - UInt8(ascii: "2") + 26
        default: return nil
        }
    }
}
