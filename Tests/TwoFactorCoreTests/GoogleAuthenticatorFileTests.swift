import Foundation
import XCTest
@testable import TwoFactorCore

/// The ~/.google_authenticator parser, on files written by the real `google-authenticator`
/// command (Tests/fixtures/google-authenticator, made by libpam-google-authenticator 20191231)
/// and on hand-made broken ones.
final class GoogleAuthenticatorFileTests: XCTestCase {
    func fixture(_ name: String) throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/google-authenticator/\(name)")
        return [UInt8](try Data(contentsOf: url))
    }

    func parse(_ text: String) throws -> GoogleAuthenticatorFile { try GoogleAuthenticatorFile(parsing: Array(text.utf8)) }

    func testTOTPFileWithRateLimitAndWindow() throws {
        let file = try GoogleAuthenticatorFile(parsing: try fixture("totp-ratelimit-window17"))
        XCTAssertEqual(Base32.encode(file.secret), "2NTWXH6CSJNXTOLJ7VSFHIWPNQ")
        XCTAssertEqual(file.kind, .totp)
        XCTAssertEqual(file.stepSize, 30)
        XCTAssertEqual(file.windowSize, 17)
        XCTAssertEqual(file.totpStepsEitherSide, 8)
        XCTAssertEqual(file.usedSteps, [])
        XCTAssertNil(file.lastUsedStep)
        XCTAssertEqual(file.rateLimitAttempts, 3)
        XCTAssertEqual(file.rateLimitSeconds, 30)
        XCTAssertEqual(file.scratchCodes, ["58834231", "73055608", "74692146", "99644993", "65808213"])
        XCTAssertEqual(file.otherOptions, [])
    }

    func testHOTPFile() throws {
        let file = try GoogleAuthenticatorFile(parsing: try fixture("hotp-window5"))
        XCTAssertEqual(file.kind, .hotp)
        XCTAssertEqual(file.hotpCounter, 1)
        XCTAssertEqual(file.hotpLookAhead, 4)
        XCTAssertNil(file.usedSteps)
        XCTAssertEqual(file.scratchCodes.count, 5)
        // google-authenticator printed 727096 as "code 1"; our HOTP agrees.
        XCTAssertEqual(HOTP.code(secret: file.secret, counter: 1, algorithm: .sha1, digits: 6), "727096")
    }

    func testStepSize60WithoutReuseProtection() throws {
        let file = try GoogleAuthenticatorFile(parsing: try fixture("totp-step60"))
        XCTAssertEqual(file.stepSize, 60)
        XCTAssertEqual(file.windowSize, 3)
        XCTAssertNil(file.usedSteps)
        XCTAssertNil(file.rateLimitAttempts)
    }

    func testUsedStepsTimestampsSkewAndUnknownOptions() throws {
        let file = try parse("""
            JBSWY3DPEHPK3PXPJBSWY3DPEH
            " RATE_LIMIT 3 30 1764600000 1764600010
            " DISALLOW_REUSE 58820000 58820002 58820001
            " TIME_SKEW -1
            " FUTURE_THING yes
            " TOTP_AUTH
            12345678

            """)
        XCTAssertEqual(file.usedSteps, [58820000, 58820002, 58820001])
        XCTAssertEqual(file.lastUsedStep, 58820002)
        XCTAssertEqual(file.timeSkew, -1)
        XCTAssertEqual(file.otherOptions, ["FUTURE_THING yes"])
        XCTAssertEqual(file.scratchCodes, ["12345678"])
    }

    func testBrokenFiles() throws {
        let truncated: [String] = [
            "",
            "JBSWY3DPEHPK3PXPJBSWY3DPEH",                     // no newline at all
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\" TOTP_AUTH\n1234", // cut inside a scratch code, no newline
            "JBSWY3DP\n",                                      // secret too short
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\n1234\n",              // a scratch code cut short
        ]
        for text in truncated {
            XCTAssertThrowsError(try parse(text), text) { error in
                guard case .truncated = error as? GoogleAuthenticatorFileError else { return XCTFail("\(text): \(error)") }
            }
        }
        let foreign: [String] = [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI foo@bar\n",
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\nhello\n",
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\" WINDOW_SIZE many\n",
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\" RATE_LIMIT 3\n",
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\" HOTP_COUNTER 1\n\" TOTP_AUTH\n",
            "jbswy3dpehpk3pxp\n",
            "JBSWY3DPEHPK3PXPJBSWY3DPEH\n\0\n",
        ]
        for text in foreign {
            XCTAssertThrowsError(try parse(text), text) { error in
                guard case .notASecretFile = error as? GoogleAuthenticatorFileError else { return XCTFail("\(text): \(error)") }
            }
        }
        XCTAssertThrowsError(try GoogleAuthenticatorFile(parsing: [UInt8](repeating: 0x41, count: 70_000) + [10]))
    }

    func testScratchCodesAreRecoveryCodeInput() {
        XCTAssertEqual(CodeInput.classify(Array("58834231".utf8), digits: 6), .recovery("58834231"))
        XCTAssertEqual(CodeInput.classify(Array("5883 4231".utf8), digits: 6), .recovery("58834231"))
        XCTAssertEqual(CodeInput.classify(Array("58834231".utf8), digits: 8), .totp("58834231"))
    }
}

/// HOTP look-ahead matching, against oathtool --hotp.
final class HOTPMatchTests: XCTestCase {
    func testMatchFindsTheSmallestCounterInTheRange() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/oathtool"), "oathtool not installed")
        let secret = SecureRandom.bytes(20)
        let codes = try oathtool(["--hotp", "-c", "100", "-w", "20", hexString(secret)])
        XCTAssertEqual(codes.count, 21)
        for (offset, code) in codes.enumerated() {
            let counter = UInt64(100 + offset)
            XCTAssertEqual(HOTP.match(code: code, secret: secret, algorithm: .sha1, digits: 6, counters: 100...120), counter)
            XCTAssertEqual(HOTP.match(code: code, secret: secret, algorithm: .sha1, digits: 6, counters: counter...counter), counter)
            if counter > 100 {
                XCTAssertNil(HOTP.match(code: code, secret: secret, algorithm: .sha1, digits: 6, counters: 100...(counter - 1)))
            }
        }
        XCTAssertNil(HOTP.match(code: "12345", secret: secret, algorithm: .sha1, digits: 6, counters: 0...10))
        XCTAssertNil(HOTP.match(code: "12345a", secret: secret, algorithm: .sha1, digits: 6, counters: 0...10))
        // A range near the top of the counter space does not overflow.
        XCTAssertNotNil(HOTP.match(code: HOTP.code(secret: secret, counter: .max, algorithm: .sha1, digits: 6), secret: secret,
                                   algorithm: .sha1, digits: 6, counters: (UInt64.max - 3)...UInt64.max))
    }

    func testHOTPURI() throws {
        let uri = OTPAuthURI(issuer: "h", account: "a", secret: Array("12345678901234567890".utf8), parameters: .standard,
                             hotpCounter: 7)
        XCTAssertTrue(uri.uriString.hasPrefix("otpauth://hotp/h:a?"))
        XCTAssertTrue(uri.uriString.hasSuffix("&digits=6&counter=7"))
        XCTAssertEqual(try OTPAuthURI(parsing: uri.uriString).hotpCounter, 7)
    }
}
