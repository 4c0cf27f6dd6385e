import XCTest
@testable import TwoFactorCore

final class CodeInputTests: XCTestCase {
    func classify(_ text: String, digits: Int = 6) -> CodeInput {
        CodeInput.classify(Array(text.utf8), digits: digits)
    }

    func testValidTOTPCodes() {
        XCTAssertEqual(classify("123456"), .totp("123456"))
        XCTAssertEqual(classify("123 456"), .totp("123456"))
        XCTAssertEqual(classify(" 1 2 3 4 5 6 "), .totp("123456"))
        XCTAssertEqual(classify("000000"), .totp("000000"))
        XCTAssertEqual(classify("12345678", digits: 8), .totp("12345678"))
        XCTAssertEqual(classify("1234 5678", digits: 8), .totp("12345678"))
        XCTAssertEqual(classify("1234567", digits: 7), .totp("1234567"))
    }

    /// Imported google-authenticator scratch codes (8 digits, 0 and 1 included) are recovery
    /// codes where TOTP codes are shorter; on an 8-digit account 8 digits stay a TOTP code.
    func testEightDigitScratchCodesAreRecoveryCodesOnShorterAccounts() {
        XCTAssertEqual(classify("10234567"), .recovery("10234567"))
        XCTAssertEqual(classify("1023 4567", digits: 7), .recovery("10234567"))
        XCTAssertEqual(classify("10234567", digits: 8), .totp("10234567"))
        XCTAssertEqual(classify("1023456"), .invalid(.wrongLength(expected: 6, got: 7)))
    }

    func testWrongLengthDigits() {
        XCTAssertEqual(classify("12345"), .invalid(.wrongLength(expected: 6, got: 5)))
        XCTAssertEqual(classify("1234567"), .invalid(.wrongLength(expected: 6, got: 7)))
        XCTAssertEqual(classify("123456", digits: 8), .invalid(.wrongLength(expected: 8, got: 6)))
        XCTAssertEqual(classify("1"), .invalid(.wrongLength(expected: 6, got: 1)))
        XCTAssertEqual(
            CodeInputError.wrongLength(expected: 6, got: 5).description, "wrong length: expected 6 characters, got 5")
    }

    func testRecoveryCodes() {
        XCTAssertEqual(classify("ABCD-EFGH-JKMN"), .recovery("ABCDEFGHJKMN"))
        XCTAssertEqual(classify("abcd efgh-jkmn"), .recovery("ABCDEFGHJKMN"))
        // All-digit recovery codes exist (digits 2-9): still recognised.
        XCTAssertEqual(classify("2345-6789-2345"), .recovery("234567892345"))
        XCTAssertEqual(classify("ABCD-EFGH"), .invalid(.wrongLength(expected: 12, got: 8)))
        for code in RecoveryCodes.generate() {
            XCTAssertEqual(classify(code), .recovery(RecoveryCodes.normalize(code)!))
            XCTAssertEqual(classify(code.lowercased()), .recovery(RecoveryCodes.normalize(code)!))
        }
    }

    func testLettersAndPunctuation() {
        XCTAssertEqual(classify("abcdef"), .invalid(.wrongLength(expected: 12, got: 6)))
        XCTAssertEqual(classify("12345a"), .invalid(.invalidCharacters))
        XCTAssertEqual(classify("hello!"), .invalid(.invalidCharacters))
        XCTAssertEqual(classify("OOOO-OOOO-OOOO"), .invalid(.invalidCharacters))
        XCTAssertEqual(classify("123-456"), .invalid(.invalidCharacters))
        XCTAssertEqual(classify("１２３４５６"), .invalid(.invalidCharacters))  // full-width digits
        XCTAssertEqual(classify("12345😀"), .invalid(.invalidCharacters))
        XCTAssertEqual(classify("😀😀😀😀😀😀"), .invalid(.invalidCharacters))
    }

    func testEmptyAndBlank() {
        XCTAssertEqual(CodeInput.classify([], digits: 6), .invalid(.empty))
        XCTAssertEqual(classify("      "), .invalid(.empty))
        XCTAssertEqual(classify("-"), .invalid(.wrongLength(expected: 12, got: 0)))
    }

    func testControlCharactersAndNUL() {
        XCTAssertEqual(CodeInput.classify([0], digits: 6), .invalid(.controlCharacter))
        XCTAssertEqual(CodeInput.classify(Array("123456".utf8) + [0], digits: 6), .invalid(.controlCharacter))
        XCTAssertEqual(CodeInput.classify([0x31, 0, 0x32, 0x33, 0x34, 0x35, 0x36], digits: 6), .invalid(.controlCharacter))
        XCTAssertEqual(classify("123456\n"), .invalid(.controlCharacter))
        XCTAssertEqual(classify("123\t456"), .invalid(.controlCharacter))
        XCTAssertEqual(classify("\u{1b}[2J123456"), .invalid(.controlCharacter))
        XCTAssertEqual(classify("123456\u{7f}"), .invalid(.controlCharacter))
        XCTAssertEqual(classify("123456\u{85}"), .invalid(.controlCharacter))  // C1 control (NEL)
    }

    func testNonUTF8() {
        XCTAssertEqual(CodeInput.classify([0xff, 0xfe], digits: 6), .invalid(.notUTF8))
        XCTAssertEqual(CodeInput.classify(Array("12345".utf8) + [0xc3], digits: 6), .invalid(.notUTF8))
        XCTAssertEqual(CodeInput.classify([0xc0, 0x80], digits: 6), .invalid(.notUTF8))  // overlong NUL
        XCTAssertEqual(CodeInput.classify([0xed, 0xa0, 0x80], digits: 6), .invalid(.notUTF8))  // surrogate
    }

    func testTooLong() {
        XCTAssertEqual(classify(String(repeating: "1", count: 1000)), .invalid(.tooLong))
        XCTAssertEqual(CodeInput.classify([UInt8](repeating: 0, count: 1000), digits: 6), .invalid(.tooLong))
        XCTAssertEqual(CodeInput.classify([UInt8](repeating: 0xff, count: 65), digits: 6), .invalid(.tooLong))
        XCTAssertEqual(
            classify(String(repeating: " ", count: 58) + "123456"), .totp("123456"), "64 bytes is still allowed")
        XCTAssertEqual(classify(String(repeating: " ", count: 59) + "123456"), .invalid(.tooLong))
    }

    func testRandomBytesNeverTrapAndResultsAreConsistent() {
        let interesting: [UInt8] = [0, 0x20, 0x2d, 0x30, 0x31, 0x32, 0x39, 0x41, 0x61, 0x4f, 0x7f, 0x80, 0xc3, 0xa9, 0xf0, 0x9f, 0xff]
        for round in 0..<5_000 {
            let length = SecureRandom.uniform(80)
            let bytes: [UInt8] = (0..<length).map { _ in
                round % 2 == 0 ? interesting[SecureRandom.uniform(interesting.count)] : UInt8(SecureRandom.uniform(256))
            }
            let digits = 6 + SecureRandom.uniform(3)
            switch CodeInput.classify(bytes, digits: digits) {
            case .totp(let code):
                XCTAssertEqual(code.utf8.count, digits)
                XCTAssertTrue(code.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 })
            case .recovery(let code):
                XCTAssertEqual(RecoveryCodes.normalize(code), code)
            case .invalid:
                break
            }
        }
        XCTAssertEqual(classify("123456", digits: 0), .invalid(.wrongLength(expected: 0, got: 6)))
        XCTAssertEqual(classify("123456", digits: -1), .invalid(.wrongLength(expected: -1, got: 6)))
    }

    func testErrorDescriptionsAreReadable() {
        let errors: [CodeInputError] = [.empty, .tooLong, .notUTF8, .controlCharacter, .invalidCharacters]
        for error in errors {
            XCTAssertGreaterThan(error.description.count, 10)
        }
        XCTAssertEqual(CodeInputError.tooLong.description, "the input is too long to be a code (at most 64 bytes)")
    }
}
