import XCTest
@testable import TwoFactorCore

final class CryptoTests: XCTestCase {
    /// RFC 4231 test cases 1 and 2.
    func testHMACRFC4231() {
        let key1 = [UInt8](repeating: 0x0b, count: 20)
        XCTAssertEqual(
            hexString(HMAC.sha256(Array("Hi There".utf8), key: key1)),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        XCTAssertEqual(
            hexString(HMAC.authenticate(Array("Hi There".utf8), key: key1, algorithm: .sha512)),
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                + "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")
        let message2 = Array("what do ya want for nothing?".utf8)
        XCTAssertEqual(
            hexString(HMAC.sha256(message2, key: Array("Jefe".utf8))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        XCTAssertEqual(
            hexString(HMAC.authenticate(message2, key: Array("Jefe".utf8), algorithm: .sha1)),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        // Empty key and message: OpenSSL must still be given valid pointers.
        XCTAssertEqual(
            hexString(HMAC.sha256([], key: [])), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    /// Known answers from the GCM specification (test cases 13 and 14: zero key and nonce) and one
    /// with associated data computed by an independent implementation (pyca/cryptography).
    func testAESGCMKnownAnswers() throws {
        let zeroKey = [UInt8](repeating: 0, count: 32)
        let zeroNonce = [UInt8](repeating: 0, count: 12)
        XCTAssertEqual(
            try AESGCM.open(zeroNonce + hexBytes("530f8afbc74536b9a963b4f1c4cb738b"), key: zeroKey, associatedData: []),
            [])
        XCTAssertEqual(
            try AESGCM.open(
                zeroNonce + hexBytes("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"), key: zeroKey,
                associatedData: []),
            [UInt8](repeating: 0, count: 16))
        let key = (0..<32).map { UInt8($0) }
        let nonce = (100..<112).map { UInt8($0) }
        XCTAssertEqual(
            try AESGCM.open(
                nonce + hexBytes("3c6cb100188a22f14c422c8db9170f8969e66022c67900ba80108a05ecc09623"), key: key,
                associatedData: Array("user:alice".utf8)),
            Array("twofactor secret".utf8))
    }

    func testAESGCMRoundTrip() throws {
        for length in [0, 1, 15, 16, 17, 20, 100, 1000] {
            let key = SecureRandom.bytes(32)
            let plaintext = SecureRandom.bytes(length)
            let aad = Array("uid=1000".utf8)
            let sealed = try AESGCM.seal(plaintext, key: key, associatedData: aad)
            XCTAssertEqual(sealed.count, 12 + length + 16)
            XCTAssertEqual(try AESGCM.open(sealed, key: key, associatedData: aad), plaintext)
            XCTAssertEqual(try AESGCM.open(try AESGCM.seal(plaintext, key: key, associatedData: []), key: key, associatedData: []), plaintext)
            // Fresh nonce each time: the same input never seals to the same bytes.
            XCTAssertNotEqual(try AESGCM.seal(plaintext, key: key, associatedData: aad), sealed)
        }
    }

    func testAESGCMRejectsTamperingWrongKeyAndWrongAAD() throws {
        let key = SecureRandom.bytes(32)
        let aad = Array("uid=1000".utf8)
        let sealed = try AESGCM.seal(SecureRandom.newSecret(), key: key, associatedData: aad)
        for index in sealed.indices {
            for flip: UInt8 in [0x01, 0x80] {
                var tampered = sealed
                tampered[index] ^= flip
                XCTAssertThrowsError(try AESGCM.open(tampered, key: key, associatedData: aad), "byte \(index)") { error in
                    XCTAssertEqual(error as? CryptoError, .authenticationFailed)
                }
            }
        }
        var wrongKey = key
        wrongKey[31] ^= 1
        for (tryKey, tryAAD) in [(wrongKey, aad), (key, Array("uid=1001".utf8)), (key, []), (SecureRandom.bytes(32), aad)] {
            XCTAssertThrowsError(try AESGCM.open(sealed, key: tryKey, associatedData: tryAAD)) { error in
                XCTAssertEqual(error as? CryptoError, .authenticationFailed)
            }
        }
        // Dropping or adding bytes.
        XCTAssertThrowsError(try AESGCM.open(Array(sealed.dropLast()), key: key, associatedData: aad)) { error in
            XCTAssertEqual(error as? CryptoError, .authenticationFailed)
        }
        XCTAssertThrowsError(try AESGCM.open(sealed + [0], key: key, associatedData: aad)) { error in
            XCTAssertEqual(error as? CryptoError, .authenticationFailed)
        }
        for length in [0, 1, 27] {
            XCTAssertThrowsError(try AESGCM.open(Array(sealed.prefix(length)), key: key, associatedData: aad)) { error in
                XCTAssertEqual(error as? CryptoError, .truncated)
            }
        }
        for badKey in [[], SecureRandom.bytes(16), SecureRandom.bytes(31), SecureRandom.bytes(33)] {
            XCTAssertThrowsError(try AESGCM.seal([1], key: badKey, associatedData: [])) { error in
                XCTAssertEqual(error as? CryptoError, .invalidKeyLength)
            }
            XCTAssertThrowsError(try AESGCM.open(sealed, key: badKey, associatedData: aad)) { error in
                XCTAssertEqual(error as? CryptoError, .invalidKeyLength)
            }
        }
        XCTAssertTrue(CryptoError.authenticationFailed.description.contains("authentication failed"))
    }

    func testConstantTimeHelpers() {
        XCTAssertTrue(ConstantTime.equals([], []))
        XCTAssertTrue(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        XCTAssertFalse(ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        XCTAssertFalse(ConstantTime.equals([0, 2, 3], [1, 2, 3]))
        XCTAssertFalse(ConstantTime.equals([1, 2], [1, 2, 3]))
        XCTAssertFalse(ConstantTime.equals([], [0]))
        XCTAssertTrue(ConstantTime.equals(UInt64(0x3132_3334), UInt64(0x3132_3334)))
        XCTAssertFalse(ConstantTime.equals(UInt64(1) << 63, 0))
        XCTAssertFalse(ConstantTime.equals(UInt64(1), 0))
        var secret = SecureRandom.bytes(64)
        secret[0] = 1
        ConstantTime.zero(&secret)
        XCTAssertEqual(secret, [UInt8](repeating: 0, count: 64))
        var empty: [UInt8] = []
        ConstantTime.zero(&empty)
        XCTAssertEqual(empty, [])
    }

    func testSecureRandom() {
        XCTAssertEqual(SecureRandom.bytes(0), [])
        XCTAssertEqual(SecureRandom.bytes(-5), [])
        XCTAssertEqual(SecureRandom.bytes(33).count, 33)
        let secrets = (0..<50).map { _ in SecureRandom.newSecret() }
        XCTAssertTrue(secrets.allSatisfy { $0.count == 20 })
        XCTAssertEqual(Set(secrets.map(hexString)).count, 50)
        XCTAssertEqual(SecureRandom.uniform(1), 0)
        XCTAssertEqual(SecureRandom.uniform(0), 0)
        XCTAssertEqual(SecureRandom.uniform(-3), 0)
        // 30,000 draws over 30 values: each count is about 1000 (standard deviation ~31), so
        // 800...1200 fails only if the sampler is broken.
        var counts = [Int](repeating: 0, count: 30)
        for _ in 0..<30_000 {
            let value = SecureRandom.uniform(30)
            XCTAssertTrue((0..<30).contains(value))
            counts[value] += 1
        }
        XCTAssertTrue(counts.allSatisfy { (800...1200).contains($0) }, "\(counts)")
        XCTAssertTrue((0..<Int.max).contains(SecureRandom.uniform(.max)))
    }
}
