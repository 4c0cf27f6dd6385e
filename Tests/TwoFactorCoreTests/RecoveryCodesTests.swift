import Foundation
import XCTest
@testable import TwoFactorCore

final class RecoveryCodesTests: XCTestCase {
    func testAlphabetAndEntropy() {
        XCTAssertEqual(String(RecoveryCodes.alphabet), "23456789ABCDEFGHJKMNPQRSTVWXYZ")
        XCTAssertEqual(RecoveryCodes.alphabet.count, 30)
        XCTAssertEqual(Set(RecoveryCodes.alphabet).count, 30)
        for ambiguous: Character in ["0", "O", "1", "I", "L", "U"] {
            XCTAssertFalse(RecoveryCodes.alphabet.contains(ambiguous), "\(ambiguous)")
        }
        let bits = Double(RecoveryCodes.length) * log2(Double(RecoveryCodes.alphabet.count))
        XCTAssertGreaterThanOrEqual(bits, 50)
        XCTAssertEqual(bits, 58.88, accuracy: 0.01)
        XCTAssertEqual(RecoveryCodes.count, 8)
    }

    /// The PAM module judges shapes with CodeShape (compiled into it); the core must use the
    /// same definitions, so a code the one generates is a code the other recognises.
    func testCoreAndModuleShareOneDefinitionOfCodeShapes() {
        XCTAssertEqual(RecoveryCodes.alphabetASCII, Array(CodeShape.recoveryAlphabetBytes))
        XCTAssertEqual(RecoveryCodes.length, CodeShape.recoveryLength)
        XCTAssertEqual(CodeInput.maxLength, CodeShape.maxLength)
        for code in RecoveryCodes.generate() {
            XCTAssertEqual(code.utf8.count, CodeShape.printedRecoveryLength)
            let bytes = Array(code.utf8)
            bytes.withUnsafeBufferPointer { buffer in
                XCTAssertTrue(CodeShape.looksLikeCode(buffer, digits: 6), code)
                XCTAssertTrue(CodeShape.isPlausibleCode(buffer), code)
            }
            let answer = Array(("hunter2" + code.lowercased()).utf8)
            XCTAssertEqual(answer.withUnsafeBufferPointer { CodeShape.codeSplit($0, digits: 6) }, 7, code)
        }
    }

    func testGenerateFormatAndDistinctness() {
        let format = try! NSRegularExpression(pattern: "^[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}$")
        var all = Set<String>()
        for _ in 0..<50 {
            let codes = RecoveryCodes.generate()
            XCTAssertEqual(codes.count, 8)
            XCTAssertEqual(Set(codes).count, 8)
            for code in codes {
                XCTAssertEqual(
                    format.numberOfMatches(in: code, range: NSRange(code.startIndex..., in: code)), 1, code)
                let normalized = RecoveryCodes.normalize(code)
                XCTAssertNotNil(normalized)
                XCTAssertEqual(normalized.map(RecoveryCodes.display), code)
                all.insert(code)
            }
        }
        XCTAssertEqual(all.count, 400, "a repeated code across batches means the generator is weak")
        XCTAssertEqual(RecoveryCodes.generate(count: 0), [])
        XCTAssertEqual(RecoveryCodes.generate(count: -1), [])
        XCTAssertEqual(RecoveryCodes.generate(count: 20).count, 20)
    }

    func testEveryAlphabetCharacterIsUsed() {
        let used = Set(RecoveryCodes.generate(count: 200).joined().filter { $0 != "-" })
        XCTAssertEqual(used, Set(RecoveryCodes.alphabet))
    }

    func testNormalize() {
        XCTAssertEqual(RecoveryCodes.normalize("abcd efgh-jkmn"), "ABCDEFGHJKMN")
        XCTAssertEqual(RecoveryCodes.normalize("ABCD-EFGH-JKMN"), "ABCDEFGHJKMN")
        XCTAssertEqual(RecoveryCodes.normalize("  abcdefghjkmn  "), "ABCDEFGHJKMN")
        XCTAssertEqual(RecoveryCodes.normalize("ab-cd-ef-gh-jk-mn"), "ABCDEFGHJKMN")
        XCTAssertEqual(RecoveryCodes.normalize("2345 6789 WXYZ"), "23456789WXYZ")
        // Ambiguous characters are refused, not guessed.
        for input in ["0BCD-EFGH-JKMN", "OBCD-EFGH-JKMN", "1BCD-EFGH-JKMN", "IBCD-EFGH-JKMN", "LBCD-EFGH-JKMN",
            "UBCD-EFGH-JKMN", "iBCD-EFGH-JKMN", "lbcd-efgh-jkmn"]
        {
            XCTAssertNil(RecoveryCodes.normalize(input), input)
        }
        // Wrong length, other punctuation, non-ASCII (even letters that uppercase to ASCII).
        for input in ["", "ABCD-EFGH-JKM", "ABCD-EFGH-JKMNP", "ABCD_EFGH_JKMN", "ABCD.EFGH.JKMN", "ABCD\tEFGH-JKMN",
            "ABCD-EFGH-JKMſ", "ABCD-EFGH-JKMＮ", "ABCD-EFGH-JKM\u{0}", String(repeating: "A", count: 1000)]
        {
            XCTAssertNil(RecoveryCodes.normalize(input), input.debugDescription)
        }
    }

    func testDisplay() {
        XCTAssertEqual(RecoveryCodes.display("ABCDEFGHJKMN"), "ABCD-EFGH-JKMN")
        XCTAssertEqual(RecoveryCodes.display(""), "")
    }

    func testHashIsKeyedHMACSHA256() {
        let key1 = SecureRandom.bytes(32)
        let key2 = SecureRandom.bytes(32)
        let code = "ABCDEFGHJKMN"
        let hash1 = RecoveryCodes.hash(normalized: code, key: key1)
        XCTAssertEqual(hash1.count, 32)
        XCTAssertEqual(hash1, RecoveryCodes.hash(normalized: code, key: key1))
        XCTAssertNotEqual(hash1, RecoveryCodes.hash(normalized: code, key: key2))
        XCTAssertNotEqual(hash1, RecoveryCodes.hash(normalized: "ABCDEFGHJKMP", key: key1))
        XCTAssertEqual(hash1, HMAC.sha256(Array(code.utf8), key: key1))
        // Fixed value cross-checked with `printf ABCDEFGHJKMN | openssl dgst -sha256 -hmac twofactor`.
        XCTAssertEqual(
            hexString(RecoveryCodes.hash(normalized: code, key: Array("twofactor".utf8))),
            "f8eb2a352f4746d137b2174e15e6ae148277a0913571e782c16948cd3669b513")
    }
}
