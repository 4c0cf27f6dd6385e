import XCTest
@testable import TwoFactorCore

/// Our codes against oathtool (oath-toolkit), an independent implementation.
final class OathtoolCrossCheckTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/oathtool"), "oathtool not installed")
    }

    func testRFC4226VectorsMatchOathtool() throws {
        let secret = Array("12345678901234567890".utf8)
        let reference = try oathtool(["--hotp", "-c", "0", "-w", "9", hexString(secret)])
        XCTAssertEqual(reference.count, 10)
        for (counter, code) in reference.enumerated() {
            XCTAssertEqual(HOTP.code(secret: secret, counter: UInt64(counter), algorithm: .sha1, digits: 6), code)
        }
    }

    func testTOTPMatchesOathtoolForRandomSecrets() throws {
        let now = Int64(Date().timeIntervalSince1970)
        var compared = 0
        for algorithm in OTPAlgorithm.allCases {
            for secretLength in [10, 20, 32, 64] {
                let secret = SecureRandom.bytes(secretLength)
                for digits in [6, 8] {
                    for period in [30, 60, 17] {
                        let parameters = try OTPParameters(algorithm: algorithm, digits: digits, period: period)
                        let totp = TOTP(secret: secret, parameters: parameters)
                        let instants: [Int64] = [0, 59, now, Int64(SecureRandom.uniform(4_000_000_000)), 20_000_000_000]
                        for time in instants {
                            let reference = try oathtool([
                                "--totp=\(algorithm.oathtoolMode)", "-d", "\(digits)", "-s", "\(period)s",
                                "-N", "@\(time)", hexString(secret),
                            ])
                            XCTAssertEqual(
                                [totp.code(at: time)], reference,
                                "\(algorithm) \(digits) digits, period \(period), time \(time), secret \(hexString(secret))")
                            compared += 1
                        }
                    }
                }
            }
        }
        XCTAssertEqual(compared, 3 * 4 * 2 * 3 * 5)
    }

    /// oathtool -w prints the codes of the following steps too: every one must match in our window.
    func testOathtoolWindowCodesMatchOurSteps() throws {
        let secret = SecureRandom.newSecret()
        let totp = TOTP(secret: secret, parameters: .standard)
        let time: Int64 = 1_750_000_000
        let codes = try oathtool(["--totp", "-w", "4", "-N", "@\(time)", hexString(secret)])
        XCTAssertEqual(codes.count, 5)
        for (index, code) in codes.enumerated() {
            XCTAssertEqual(totp.code(forStep: totp.step(at: time) + Int64(index)), code)
            XCTAssertNotNil(totp.match(code: code, at: time, window: 4))
        }
    }

    func testOathtoolAcceptsOurBase32() throws {
        for length in [10, 20, 32] {
            let secret = SecureRandom.bytes(length)
            let totp = TOTP(secret: secret, parameters: .standard)
            for encoded in [Base32.encode(secret), Base32.encode(secret, padding: true)] {
                let reference = try oathtool(["--totp", "-b", "-N", "@1234567890", encoded])
                XCTAssertEqual([totp.code(at: 1_234_567_890)], reference, encoded)
            }
        }
    }
}
