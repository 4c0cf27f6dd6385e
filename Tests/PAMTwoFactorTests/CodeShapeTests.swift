import XCTest
@testable import PAMTwoFactorPure

/// The code-shape rules the module applies before anything reaches the daemon (CodeShape.swift,
/// the file TwoFactorCore compiles too): try_first_pass detection, the pre-check, forward_pass.
final class CodeShapeTests: XCTestCase {
    private func bytes<T>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
        Array(text.utf8).withUnsafeBufferPointer(body)
    }

    private func looksLikeCode(_ text: String, digits: Int = 6) -> Bool {
        bytes(text) { CodeShape.looksLikeCode($0, digits: digits) }
    }

    private func split(_ text: String, digits: Int = 6) -> (password: String, code: String)? {
        let answer = Array(text.utf8)
        guard let at = answer.withUnsafeBufferPointer({ CodeShape.codeSplit($0, digits: digits) }) else { return nil }
        return (String(decoding: answer[..<at], as: UTF8.self), String(decoding: answer[at...], as: UTF8.self))
    }

    func testRecoveryAlphabet() {
        let alphabet = String(decoding: CodeShape.recoveryAlphabetBytes, as: UTF8.self)
        XCTAssertEqual(alphabet, "23456789ABCDEFGHJKMNPQRSTVWXYZ")
        XCTAssertEqual(Set(alphabet).count, 30)
        for confusable in "01ILOU" { XCTAssertFalse(alphabet.contains(confusable), "\(confusable)") }
        XCTAssertEqual(CodeShape.printedRecoveryLength, 14)
        for byte in CodeShape.recoveryAlphabetBytes {
            XCTAssertEqual(CodeShape.recoveryCharacter(byte), byte)
            if byte >= UInt8(ascii: "A") { XCTAssertEqual(CodeShape.recoveryCharacter(byte + 32), byte) }  // lower case
        }
        for byte in Array("01ilouILOU -_!\u{0}".utf8) + [0x80, 0xC3, 0xFF] {
            XCTAssertNil(CodeShape.recoveryCharacter(byte), "\(byte)")
        }
    }

    func testTryFirstPassTakesOnlyCodeShapedTokens() {
        for code in ["123456", "123 456", "000000", "ABCD-EFGH-JKMN", "abcd efgh jkmn", "ABCDEFGHJKMN", "2345-6789-2345"] {
            XCTAssertTrue(looksLikeCode(code), code)
        }
        XCTAssertTrue(looksLikeCode("1234567", digits: 7))
        XCTAssertTrue(looksLikeCode("12345678", digits: 8))
        // Passwords of an earlier module stay passwords: the module prompts instead.
        for password in ["", "12345", "1234567", "hunter2", "password", "ABCD-EFGH-JKM0", "ABCD-EFGH-JKML",
                         "ABCD-EFGH-JKMN-P", "1234-5678-9012", "12345\u{0}", "123456\n", "ABCD_EFGH_JKMN"] {
            XCTAssertFalse(looksLikeCode(password), password)
        }
        XCTAssertFalse(looksLikeCode("123456", digits: 8))
    }

    func testPlausibleCodesArePrintableASCIIUpToTheLimit() {
        XCTAssertEqual(CodeShape.maxLength, 64)
        for text in ["1", "123456", "ABCD-EFGH-JKMN", "not a code but printable", String(repeating: "9", count: 64)] {
            XCTAssertTrue(bytes(text) { CodeShape.isPlausibleCode($0) }, text)
        }
        for text in ["", String(repeating: "9", count: 65), "12345\n", "123\t456", "12345\u{7f}", "12345é", "\u{1b}[2J"] {
            XCTAssertFalse(bytes(text) { CodeShape.isPlausibleCode($0) }, text)
        }
    }

    func testForwardPassCutsTheCodeOffTheEnd() {
        XCTAssertEqual(split("secret123456")?.password, "secret")
        XCTAssertEqual(split("secret123456")?.code, "123456")
        XCTAssertEqual(split("123456")?.password, "")
        XCTAssertEqual(split("x12345678", digits: 8)?.code, "12345678")
        XCTAssertEqual(split("pw1234567", digits: 7)?.password, "pw")
        // A recovery code in its printed form, either case.
        XCTAssertEqual(split("pwABCD-EFGH-JKMN")?.password, "pw")
        XCTAssertEqual(split("pw-abcd-efgh-jkmn")?.code, "abcd-efgh-jkmn")
        XCTAssertEqual(split("ABCD-EFGH-JKMN")?.password, "")
        // Digits win when both fit: the last six of a password ending in digits are the code.
        XCTAssertEqual(split("pass1234567")?.password, "pass1")
        // Neither at the end: no code (the module then sends an empty code, refused as incorrect).
        for answer in ["", "secret", "pw12345", "12345", "pwABCD-EFGH-JKMO", "pwABCDEFGHJKMN", "pwABCD-EFGH-JKM", "123456 "] {
            XCTAssertNil(split(answer), answer)
        }
    }
}
