import XCTest
@testable import TwoFactorCore

final class Base32Tests: XCTestCase {
    /// RFC 4648 section 10.
    func testRFC4648Vectors() throws {
        let vectors: [(String, String)] = [
            ("f", "MY======"), ("fo", "MZXQ===="), ("foo", "MZXW6==="), ("foob", "MZXW6YQ="),
            ("fooba", "MZXW6YTB"), ("foobar", "MZXW6YTBOI======"),
        ]
        XCTAssertEqual(Base32.encode([], padding: true), "")
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base32.encode(Array(plain.utf8), padding: true), encoded)
            XCTAssertEqual(Base32.encode(Array(plain.utf8)), encoded.replacingOccurrences(of: "=", with: ""))
            XCTAssertEqual(try Base32.decode(encoded), Array(plain.utf8))
            XCTAssertEqual(try Base32.decode(encoded.replacingOccurrences(of: "=", with: "")), Array(plain.utf8))
        }
    }

    func testRoundTripsForRandomLengths() throws {
        for length in 1...64 {
            for _ in 0..<5 {
                let bytes = SecureRandom.bytes(length)
                XCTAssertEqual(try Base32.decode(Base32.encode(bytes)), bytes)
                XCTAssertEqual(try Base32.decode(Base32.encode(bytes, padding: true)), bytes)
                XCTAssertEqual(try Base32.decode(Base32.grouped(bytes)), bytes)
                XCTAssertEqual(try Base32.decode(Base32.encode(bytes).lowercased()), bytes)
            }
        }
        // Zero bytes encode to nothing, and nothing is not a secret.
        XCTAssertEqual(Base32.encode([]), "")
        XCTAssertThrowsError(try Base32.decode(Base32.encode([]))) { error in
            XCTAssertEqual(error as? Base32Error, .empty)
        }
    }

    func testLenientDecoding() throws {
        let expected = Array("Hello!".utf8) + [0xde, 0xad, 0xbe, 0xef]
        XCTAssertEqual(try Base32.decode("JBSWY3DPEHPK3PXP"), expected)
        XCTAssertEqual(try Base32.decode("jbsw y3dp-ehpk 3pxp"), try Base32.decode("JBSWY3DPEHPK3PXP"))
        XCTAssertEqual(try Base32.decode(" JBSW\tY3DP\nEHPK\r\n3PXP "), expected)
        XCTAssertEqual(try Base32.decode("MZXW6==="), Array("foo".utf8))
        XCTAssertEqual(try Base32.decode("MZXW6"), Array("foo".utf8))
        XCTAssertEqual(try Base32.decode("MZXW6=========="), Array("foo".utf8))
    }

    func testGrouped() {
        XCTAssertEqual(Base32.grouped(Array("Hello!".utf8) + [0xde, 0xad, 0xbe, 0xef]), "JBSW Y3DP EHPK 3PXP")
        XCTAssertEqual(Base32.grouped(Array("foo".utf8)), "MZXW 6")
        XCTAssertEqual(Base32.grouped([]), "")
    }

    func testInvalidCharactersAreNamedWithTheirPosition() {
        let cases: [(String, Character, Int)] = [
            ("AB1C", "1", 3), ("0ABC", "0", 1), ("ABCDEFG8", "8", 8), ("ABCDEFG9", "9", 8),
            ("AB.CD", ".", 3), ("AB_C", "_", 3), ("AB+/", "+", 3), ("ABé", "é", 3), ("🔐AB", "🔐", 1),
            ("AB\u{0}C", "\u{0}", 3), ("MZ=XW", "X", 4), ("MZXW6===A", "A", 9),
        ]
        for (input, character, position) in cases {
            XCTAssertThrowsError(try Base32.decode(input), "\(input.debugDescription)") { error in
                XCTAssertEqual(error as? Base32Error, .invalidCharacter(character, position: position), input.debugDescription)
            }
        }
        XCTAssertEqual(
            Base32Error.invalidCharacter("1", position: 3).description,
            "invalid character '1' at position 3: base32 uses A-Z and 2-7")
        XCTAssertEqual(
            Base32Error.invalidCharacter("\u{0}", position: 2).description,
            "invalid character U+0000 at position 2: base32 uses A-Z and 2-7")
    }

    func testImpossibleLengths() {
        for input in ["A", "ABC", "ABCDEF", "ABCDEFGH" + "A", "ABCDEFGH" + "ABC", "abc-def", "A======="] {
            XCTAssertThrowsError(try Base32.decode(input), input) { error in
                XCTAssertEqual(error as? Base32Error, .invalidLength, input)
            }
        }
        for input in ["", " ", "-- --", "========"] {
            XCTAssertThrowsError(try Base32.decode(input), input.debugDescription) { error in
                XCTAssertEqual(error as? Base32Error, .empty)
            }
        }
        XCTAssertTrue(Base32Error.invalidLength.description.hasPrefix("invalid length"))
        XCTAssertTrue(Base32Error.empty.description.contains("no base32"))
    }

    /// Random text either decodes to bytes whose encoding is exactly the text's base32 letters
    /// (what the lenient decoder skips removed, uppercased, padding only at the end), or fails
    /// with a Base32Error that names a character really at that position.
    func testDecodingArbitraryStringsIsExactOrNamesTheProblem() {
        let pieces = ["A", "z", "2", "7", "=", " ", "-", "1", "\u{0}", "é", "🔐", "\r\n", "%", "\u{7f}"]
        var decoded = 0, refused = 0
        for _ in 0..<2000 {
            let text = (0..<SecureRandom.uniform(40)).map { _ in pieces[SecureRandom.uniform(pieces.count)] }.joined()
            do {
                let bytes = try Base32.decode(text)
                decoded += 1
                let letters = text.uppercased().filter { !" -\t\n\r\r\n=".contains($0) }
                let encoded = Base32.encode(bytes)
                // Leftover bits in the last character are ignored, so compare all but that one.
                XCTAssertEqual(String(letters.dropLast()), String(encoded.prefix(letters.count - 1)), text.debugDescription)
                XCTAssertEqual(try Base32.decode(encoded), bytes, text.debugDescription)
                if let firstPad = text.firstIndex(of: "=") {
                    XCTAssertTrue(text[firstPad...].allSatisfy { " -\t\n\r\r\n=".contains($0) }, text.debugDescription)
                }
            } catch {
                refused += 1
                switch error {
                case .invalidCharacter(let character, let position):
                    XCTAssertEqual(Array(text)[position - 1], character, text.debugDescription)
                case .invalidLength, .empty:
                    break
                }
            }
        }
        XCTAssertGreaterThan(decoded, 0)
        XCTAssertGreaterThan(refused, 0)
    }
}
