import XCTest
@testable import TwoFactorCore

final class OTPTests: XCTestCase {
    let rfc4226Secret = Array("12345678901234567890".utf8)

    /// RFC 4226 Appendix D: HOTP-SHA1, 6 digits, counters 0...9.
    func testRFC4226AppendixD() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314",
            "254676", "287922", "162583", "399871", "520489",
        ]
        for (counter, code) in expected.enumerated() {
            XCTAssertEqual(
                HOTP.code(secret: rfc4226Secret, counter: UInt64(counter), algorithm: .sha1, digits: 6), code,
                "counter \(counter)")
        }
    }

    /// RFC 6238 Appendix B: every row, 8 digits, 30-second steps, per-algorithm seeds.
    func testRFC6238AppendixB() throws {
        let seeds: [OTPAlgorithm: [UInt8]] = [
            .sha1: Array("12345678901234567890".utf8),
            .sha256: Array("12345678901234567890123456789012".utf8),
            .sha512: Array("1234567890123456789012345678901234567890123456789012345678901234".utf8),
        ]
        let rows: [(Int64, OTPAlgorithm, String, Int64)] = [
            (59, .sha1, "94287082", 0x1),
            (59, .sha256, "46119246", 0x1),
            (59, .sha512, "90693936", 0x1),
            (1_111_111_109, .sha1, "07081804", 0x23523EC),
            (1_111_111_109, .sha256, "68084774", 0x23523EC),
            (1_111_111_109, .sha512, "25091201", 0x23523EC),
            (1_111_111_111, .sha1, "14050471", 0x23523ED),
            (1_111_111_111, .sha256, "67062674", 0x23523ED),
            (1_111_111_111, .sha512, "99943326", 0x23523ED),
            (1_234_567_890, .sha1, "89005924", 0x273EF07),
            (1_234_567_890, .sha256, "91819424", 0x273EF07),
            (1_234_567_890, .sha512, "93441116", 0x273EF07),
            (2_000_000_000, .sha1, "69279037", 0x3F940AA),
            (2_000_000_000, .sha256, "90698825", 0x3F940AA),
            (2_000_000_000, .sha512, "38618901", 0x3F940AA),
            (20_000_000_000, .sha1, "65353130", 0x27BC86AA),
            (20_000_000_000, .sha256, "77737706", 0x27BC86AA),
            (20_000_000_000, .sha512, "47863826", 0x27BC86AA),
        ]
        XCTAssertEqual(rows.count, 18)
        for (time, algorithm, code, step) in rows {
            let totp = TOTP(secret: seeds[algorithm]!, parameters: try OTPParameters(algorithm: algorithm, digits: 8, period: 30))
            XCTAssertEqual(totp.step(at: time), step, "T for \(time)")
            XCTAssertEqual(totp.code(at: time), code, "\(algorithm) at \(time)")
            XCTAssertEqual(totp.code(forStep: step), code)
            XCTAssertEqual(totp.match(code: code, at: time, window: 0), TOTPMatch(step: step, offset: 0))
        }
    }

    func testParametersValidation() throws {
        XCTAssertEqual(OTPParameters.standard, try OTPParameters())
        XCTAssertEqual(OTPParameters.standard.algorithm, .sha1)
        XCTAssertEqual(OTPParameters.standard.digits, 6)
        XCTAssertEqual(OTPParameters.standard.period, 30)
        for digits in [-1, 0, 5, 9, 10, Int.max] {
            XCTAssertThrowsError(try OTPParameters(digits: digits)) { error in
                XCTAssertEqual(error as? OTPError, .invalidDigits(digits))
            }
        }
        for period in [Int.min, -30, 0, 3601] {
            XCTAssertThrowsError(try OTPParameters(period: period)) { error in
                XCTAssertEqual(error as? OTPError, .invalidPeriod(period))
            }
        }
        XCTAssertNoThrow(try OTPParameters(algorithm: .sha512, digits: 8, period: 1))
        XCTAssertNoThrow(try OTPParameters(algorithm: .sha256, digits: 7, period: 3600))
        XCTAssertEqual(
            OTPError.invalidDigits(9).description, "invalid number of digits 9: codes have 6 to 8 digits")
        XCTAssertEqual(
            OTPError.invalidPeriod(0).description, "invalid period 0 seconds: the period must be 1 to 3600 seconds")
    }

    func testStepRoundsDown() throws {
        let totp = TOTP(secret: rfc4226Secret, parameters: .standard)
        XCTAssertEqual(totp.step(at: 0), 0)
        XCTAssertEqual(totp.step(at: 29), 0)
        XCTAssertEqual(totp.step(at: 30), 1)
        XCTAssertEqual(totp.step(at: -1), -1)
        XCTAssertEqual(totp.step(at: -30), -1)
        XCTAssertEqual(totp.step(at: -31), -2)
        XCTAssertEqual(totp.step(at: .max), Int64.max / 30)
        XCTAssertEqual(totp.step(at: .min), Int64.min / 30 - 1)
        let hourly = TOTP(secret: rfc4226Secret, parameters: try OTPParameters(period: 3600))
        XCTAssertEqual(hourly.step(at: 7199), 1)
    }

    func testCodesAreZeroPadded() {
        // RFC 4226 counter 0 truncates to 1284755224; as 8 digits that keeps a leading "8".
        XCTAssertEqual(HOTP.code(secret: rfc4226Secret, counter: 0, algorithm: .sha1, digits: 8), "84755224")
        // Across many counters every code has exactly the requested length, only ASCII digits.
        for counter in UInt64(0)..<300 {
            for digits in 6...8 {
                let code = HOTP.code(secret: rfc4226Secret, counter: counter, algorithm: .sha256, digits: digits)
                XCTAssertEqual(code.utf8.count, digits)
                XCTAssertTrue(code.utf8.allSatisfy { $0 >= 48 && $0 <= 57 }, code)
            }
        }
    }

    func testHOTPClampsOutOfRangeDigitsInsteadOfTrapping() {
        XCTAssertEqual(HOTP.code(secret: rfc4226Secret, counter: 0, algorithm: .sha1, digits: 0).count, 1)
        XCTAssertEqual(HOTP.code(secret: rfc4226Secret, counter: 0, algorithm: .sha1, digits: 99), "1284755224")
        XCTAssertEqual(HOTP.code(secret: [], counter: 0, algorithm: .sha1, digits: 6).count, 6)
    }

    func testWindowReturnsMatchedStepAndOffset() throws {
        let totp = TOTP(secret: SecureRandom.newSecret(), parameters: .standard)
        let now: Int64 = 1_700_000_015
        let current = totp.step(at: now)
        for offset in Int64(-2)...2 {
            let code = totp.code(forStep: current + offset)
            XCTAssertEqual(
                totp.match(code: code, at: now, window: 2), TOTPMatch(step: current + offset, offset: offset),
                "offset \(offset)")
        }
        // Just outside the window: no match (unless the 6-digit code happens to collide, which
        // we rule out by checking the codes differ from every code inside the window).
        for offset: Int64 in [-3, 3] {
            let code = totp.code(forStep: current + offset)
            let inside = (-1...1).map { totp.code(forStep: current + Int64($0)) }
            if !inside.contains(code) {
                XCTAssertNil(totp.match(code: code, at: now, window: 1), "offset \(offset)")
            }
        }
        // Window 0 accepts only the current step.
        let next = totp.code(forStep: current + 1)
        if next != totp.code(forStep: current) {
            XCTAssertNil(totp.match(code: next, at: now, window: 0))
        }
    }

    func testDriftWidensTheWindowAndNeverReplacesIt() throws {
        let totp = TOTP(secret: Array("drift test secret!!!".utf8), parameters: .standard)
        let now: Int64 = 1_650_000_000
        let current = totp.step(at: now)
        // A clock 5 steps ahead: with drift 5 and window 1, steps -1...+6 match and report their
        // real offset from the server's step; the codes of now-1...now+1 are never pushed out.
        for offset in Int64(-1)...6 {
            XCTAssertEqual(
                totp.match(code: totp.code(forStep: current + offset), at: now, window: 1, driftSteps: 5),
                TOTPMatch(step: current + offset, offset: offset), "offset \(offset)")
        }
        let accepted = Set((-1...6).map { totp.code(forStep: current + Int64($0)) })
        for offset: Int64 in [-2, 7] where !accepted.contains(totp.code(forStep: current + offset)) {
            XCTAssertNil(totp.match(code: totp.code(forStep: current + offset), at: now, window: 1, driftSteps: 5))
        }
        // Negative drift widens downwards; the current code still matches.
        XCTAssertEqual(
            totp.match(code: totp.code(forStep: current - 4), at: now, window: 0, driftSteps: -4),
            TOTPMatch(step: current - 4, offset: -4))
        XCTAssertEqual(totp.match(code: totp.code(forStep: current), at: now, window: 0, driftSteps: -4),
                       TOTPMatch(step: current, offset: 0))
    }

    func testAcceptedSteps() {
        // The case: drift -2, window 1 used to accept only now-3...now-1.
        XCTAssertEqual(TOTP.acceptedSteps(current: 100, window: 1, driftSteps: -2), 97...101)
        XCTAssertEqual(TOTP.acceptedSteps(current: 100, window: 1, driftSteps: 3), 99...104)
        XCTAssertEqual(TOTP.acceptedSteps(current: 100, window: 1, driftSteps: 0), 99...101)
        XCTAssertEqual(TOTP.acceptedSteps(current: 100, window: 0, driftSteps: 0), 100...100)
        // Bounded however large the inputs.
        XCTAssertEqual(TOTP.acceptedSteps(current: 1000, window: .max, driftSteps: .min), 800...1100)
        XCTAssertEqual(TOTP.acceptedSteps(current: .max, window: 1, driftSteps: .max), (Int64.max - 1)...Int64.max)
    }

    func testMatchPrefersStepClosestToCenter() throws {
        // Find, by search, a secret where one code appears twice within 3 steps (a 6-digit
        // collision), then check that the step nearer the center wins.
        let parameters = try OTPParameters(digits: 6)
        var found = false
        var seed: UInt32 = 0
        search: while seed < 3000 {
            seed += 1
            let secret = withUnsafeBytes(of: seed.bigEndian) { Array($0) } + Array("collision".utf8)
            let totp = TOTP(secret: secret, parameters: parameters)
            var firstStep: [String: Int64] = [:]
            for step in Int64(0)..<1000 {
                let code = totp.code(forStep: step)
                if let earlier = firstStep[code], step - earlier <= 3 {
                    // Center on `step`: the code at `step` is at distance 0, `earlier` further away.
                    let time = step * 30
                    XCTAssertEqual(totp.match(code: code, at: time, window: 3), TOTPMatch(step: step, offset: 0))
                    // Center on `earlier`.
                    XCTAssertEqual(
                        totp.match(code: code, at: earlier * 30, window: 3), TOTPMatch(step: earlier, offset: 0))
                    found = true
                    break search
                }
                firstStep[code] = step
            }
        }
        XCTAssertTrue(found, "no collision found to test with")
    }

    func testMatchRejectsMalformedCodesAndNeverTraps() throws {
        let totp = TOTP(secret: rfc4226Secret, parameters: try OTPParameters(digits: 8))
        let good = totp.code(at: 59)
        XCTAssertNotNil(totp.match(code: good, at: 59, window: 0))
        XCTAssertNil(totp.match(code: String(good.dropLast()), at: 59, window: 1))
        XCTAssertNil(totp.match(code: good + "0", at: 59, window: 1))
        XCTAssertNil(totp.match(code: "", at: 59, window: 1))
        XCTAssertNil(totp.match(code: "9428708a", at: 59, window: 1))
        XCTAssertNil(totp.match(code: "9428708\u{0}", at: 59, window: 1))
        XCTAssertNil(totp.match(code: "９４２８７０８２", at: 59, window: 1))  // full-width digits
        // Steps below zero are skipped; extreme times, drifts and windows stay in range.
        XCTAssertEqual(totp.match(code: totp.code(forStep: 0), at: 10, window: 5), TOTPMatch(step: 0, offset: 0))
        _ = totp.match(code: good, at: .max, window: Int.max, driftSteps: .max)
        _ = totp.match(code: good, at: .min, window: Int.min, driftSteps: .min)
        _ = totp.match(code: good, at: 0, window: -5)
    }

    func testMatchWithEveryAlgorithmAndDigitCount() throws {
        for algorithm in OTPAlgorithm.allCases {
            for digits in 6...8 {
                let totp = TOTP(
                    secret: SecureRandom.bytes(32), parameters: try OTPParameters(algorithm: algorithm, digits: digits, period: 45))
                let now: Int64 = 1_800_000_000
                let code = totp.code(at: now)
                XCTAssertEqual(code.count, digits)
                XCTAssertEqual(totp.match(code: code, at: now, window: 1)?.offset, 0)
                // Change one digit: no longer the code for this step.
                let last = code.last!.wholeNumberValue!
                let wrong = String(code.dropLast()) + String((last + 1) % 10)
                XCTAssertNotEqual(totp.match(code: wrong, at: now, window: 0)?.step, totp.step(at: now))
            }
        }
    }
}
