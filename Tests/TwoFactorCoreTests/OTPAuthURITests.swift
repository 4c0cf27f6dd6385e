import XCTest
@testable import TwoFactorCore

final class OTPAuthURITests: XCTestCase {
    let helloSecret = Array("Hello!".utf8) + [0xde, 0xad, 0xbe, 0xef]

    func testKnownGoodURIString() throws {
        let uri = OTPAuthURI(
            issuer: "Example Co", account: "alice@example.com", secret: helloSecret, parameters: .standard)
        XCTAssertEqual(
            uri.uriString,
            "otpauth://totp/Example%20Co:alice%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Example%20Co&algorithm=SHA1&digits=6&period=30"
        )
        let tricky = OTPAuthURI(
            issuer: "A:B&C=D?E/F", account: "bob+1@host é", secret: helloSecret,
            parameters: try OTPParameters(algorithm: .sha512, digits: 8, period: 60))
        XCTAssertEqual(
            tricky.uriString,
            "otpauth://totp/A%3AB%26C%3DD%3FE%2FF:bob%2B1%40host%20%C3%A9?secret=JBSWY3DPEHPK3PXP&issuer=A%3AB%26C%3DD%3FE%2FF&algorithm=SHA512&digits=8&period=60"
        )
        let noIssuer = OTPAuthURI(issuer: "", account: "carol", secret: helloSecret, parameters: .standard)
        XCTAssertEqual(
            noIssuer.uriString, "otpauth://totp/carol?secret=JBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30")
    }

    func testParsesTheKeyURIFormatExample() throws {
        let uri = try OTPAuthURI(
            parsing: "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example")
        XCTAssertEqual(uri.issuer, "Example")
        XCTAssertEqual(uri.account, "alice@google.com")
        XCTAssertEqual(uri.secret, helloSecret)
        XCTAssertEqual(uri.parameters, .standard)

        let full = try OTPAuthURI(
            parsing:
                "OTPAUTH://TOTP/ACME%20Co:john.doe%40email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=sha256&digits=7&period=60&image=x"
        )
        XCTAssertEqual(full.issuer, "ACME Co")
        XCTAssertEqual(full.account, "john.doe@email.com")
        XCTAssertEqual(full.parameters, try OTPParameters(algorithm: .sha256, digits: 7, period: 60))

        // Encoded separator with a matching issuer parameter, spaces after the separator, lowercase
        // padded secret, issuer only in the query, no issuer at all.
        let encoded = try OTPAuthURI(parsing: "otpauth://totp/Big%20Corp%3A%20%20alice?secret=jbswy3dpehpk3pxp&issuer=Big%20Corp")
        XCTAssertEqual(encoded.issuer, "Big Corp")
        XCTAssertEqual(encoded.account, "alice")
        XCTAssertEqual(encoded.secret, helloSecret)
        let queryOnly = try OTPAuthURI(parsing: "otpauth://totp/alice?issuer=Q&secret=MZXW6===")
        XCTAssertEqual(queryOnly.issuer, "Q")
        XCTAssertEqual(queryOnly.account, "alice")
        XCTAssertEqual(queryOnly.secret, Array("foo".utf8))
        let bare = try OTPAuthURI(parsing: "otpauth://totp/a%3Ab?secret=MZXW6")
        XCTAssertEqual(bare.issuer, "")
        XCTAssertEqual(bare.account, "a:b")
    }

    func testRoundTripsRandomSecretsAndAwkwardNames() throws {
        let names = [
            "Example", "Example Co", "ACME: Inc.", "a@b", "x&y=z", "why?", "slash/and\\back", "100% sure",
            "plus+sign", "Ünïcødé", "日本語", "🔐 Vault", "tilde~dot.dash-under_", "#hash", "quote\"'",
            "a:b:c", "trailing ",
        ]
        for issuer in names + [""] {
            for account in names {
                for algorithm in OTPAlgorithm.allCases {
                    let parameters = try OTPParameters(
                        algorithm: algorithm, digits: 6 + SecureRandom.uniform(3), period: 1 + SecureRandom.uniform(3600))
                    let original = OTPAuthURI(
                        issuer: issuer, account: account, secret: SecureRandom.bytes(1 + SecureRandom.uniform(64)),
                        parameters: parameters)
                    let text = original.uriString
                    // Only unreserved characters and escapes remain in the label and values.
                    XCTAssertFalse(text.contains(" "), text)
                    XCTAssertEqual(text.filter { $0 == "?" }.count, 1, text)
                    XCTAssertEqual(try OTPAuthURI(parsing: text), original, text)
                }
            }
        }
    }

    func testParseErrors() {
        let secret = "secret=JBSWY3DPEHPK3PXP"
        let cases: [(String, OTPAuthURIError)] = [
            ("https://totp/A:b?\(secret)", .invalidScheme("https:")),
            ("otpauth:/totp/A:b?\(secret)", .invalidScheme("otpauth:")),
            ("", .invalidScheme("")),
            ("otpauth://hotp/A:b?\(secret)", .invalidCounter("")),
            ("otpauth://hotp/A:b?\(secret)&counter=x", .invalidCounter("x")),
            ("otpauth://motp/A:b?\(secret)", .unsupportedType("motp")),
            ("otpauth://steam/A:b?\(secret)", .unsupportedType("steam")),
            ("otpauth://totp", .missingAccount),
            ("otpauth://totp?\(secret)", .missingAccount),
            ("otpauth://totp/?\(secret)", .missingAccount),
            ("otpauth://totp/A:?\(secret)", .missingAccount),
            ("otpauth://totp/A:b", .missingSecret),
            ("otpauth://totp/A:b?issuer=A", .missingSecret),
            ("otpauth://totp/A:b?secret=", .invalidSecret(.empty)),
            ("otpauth://totp/A:b?secret=JBS1", .invalidSecret(.invalidCharacter("1", position: 4))),
            ("otpauth://totp/A:b?secret=ABC", .invalidSecret(.invalidLength)),
            ("otpauth://totp/A:b?\(secret)&digits=9", .invalidDigits("9")),
            ("otpauth://totp/A:b?\(secret)&digits=5", .invalidDigits("5")),
            ("otpauth://totp/A:b?\(secret)&digits=six", .invalidDigits("six")),
            ("otpauth://totp/A:b?\(secret)&digits=", .invalidDigits("")),
            ("otpauth://totp/A:b?\(secret)&digits=-6", .invalidDigits("-6")),
            ("otpauth://totp/A:b?\(secret)&digits=000000000006", .invalidDigits("000000000006")),
            ("otpauth://totp/A:b?\(secret)&period=0", .invalidPeriod("0")),
            ("otpauth://totp/A:b?\(secret)&period=3601", .invalidPeriod("3601")),
            ("otpauth://totp/A:b?\(secret)&period=30s", .invalidPeriod("30s")),
            ("otpauth://totp/A:b?\(secret)&algorithm=MD5", .unsupportedAlgorithm("MD5")),
            ("otpauth://totp/A:b?\(secret)&issuer=B", .issuerMismatch(label: "A", parameter: "B")),
            ("otpauth://totp/A%3Ab?\(secret)&issuer=B", .issuerMismatch(label: "A", parameter: "B")),
            ("otpauth://totp/A:b?\(secret)&secret=MZXW6", .duplicateParameter("secret")),
            ("otpauth://totp/A:b?\(secret)&DIGITS=6&digits=8", .duplicateParameter("digits")),
            ("otpauth://totp/A%G1:b?\(secret)", .invalidPercentEncoding("A%G1")),
            ("otpauth://totp/A:b%4?\(secret)", .invalidPercentEncoding("b%4")),
            ("otpauth://totp/A:b%FF?\(secret)", .notUTF8),
            ("otpauth://totp/A:b%00?\(secret)", .controlCharacter),
            ("otpauth://totp/A%0A:b?\(secret)", .controlCharacter),
        ]
        for (uri, expected) in cases {
            XCTAssertThrowsError(try OTPAuthURI(parsing: uri), uri) { error in
                XCTAssertEqual(error as? OTPAuthURIError, expected, uri)
                XCTAssertFalse((error as? OTPAuthURIError)?.description.isEmpty ?? true)
            }
        }
        XCTAssertEqual(
            OTPAuthURIError.unsupportedType("motp").description,
            "unsupported OTP type \"motp\": only totp (time-based) and hotp (counter-based) are supported")
        XCTAssertEqual(
            OTPAuthURIError.issuerMismatch(label: "A", parameter: "B").description,
            "issuer mismatch: the label says \"A\" but the issuer parameter says \"B\"")
        XCTAssertEqual(
            OTPAuthURIError.invalidSecret(.invalidCharacter("1", position: 4)).description,
            "invalid secret: invalid character '1' at position 4: base32 uses A-Z and 2-7")
    }

    /// Random text either parses into a URI that survives its own round trip, or is refused with
    /// an error that can be shown (never a trap, never a half-parsed value). Half the inputs start
    /// from a valid URI and get random pieces appended, so both outcomes really occur.
    func testParsingArbitraryStringsRoundTripsOrIsRefused() throws {
        let pieces = [
            "otpauth://", "totp", "/", ":", "?", "&", "=", "secret", "issuer", "digits", "%", "%3A", "%F", "A", "é",
            "\u{0}", "JBSWY3DP", "6", "period", "&digits=8", "&period=60", "&issuer=A", "&issuer=B", "x",
        ]
        var parsed = 0, refused = 0
        for round in 0..<3000 {
            let start = round % 2 == 0 ? "otpauth://totp/A:b?secret=JBSWY3DP" : ""
            let text = start + (0..<SecureRandom.uniform(16)).map { _ in pieces[SecureRandom.uniform(pieces.count)] }.joined()
            do {
                let uri = try OTPAuthURI(parsing: text)
                parsed += 1
                XCTAssertFalse(uri.secret.isEmpty, text.debugDescription)
                XCTAssertEqual(try OTPAuthURI(parsing: uri.uriString), uri, text.debugDescription)
            } catch {
                refused += 1
                XCTAssertFalse(error.description.isEmpty, text.debugDescription)
            }
        }
        XCTAssertGreaterThan(parsed, 0)
        XCTAssertGreaterThan(refused, 0)
    }

    // Found by the otpauth fuzzer (Tests/attack/fuzz, target "otpauth"): with the issuer only in
    // the query, spaces before the account were kept, but the URI written for that value puts the
    // issuer in the label, where such spaces are dropped; parse, write, parse changed the account.
    func testSpacesBeforeTheAccountAreNeverPartOfIt() throws {
        for uri in ["otpauth://totp/%20alice?secret=MZXW6&issuer=X", "otpauth://totp/%20%20alice?secret=MZXW6",
                    "otpauth://totp/X:%20alice?secret=MZXW6"] {
            let parsed = try OTPAuthURI(parsing: uri)
            XCTAssertEqual(parsed.account, "alice", uri)
            XCTAssertEqual(try OTPAuthURI(parsing: parsed.uriString), parsed, uri)
        }
    }

    // Found by the otpauth fuzzer: an hotp URI with period=60 was read with that period, but the
    // URI written for an HOTP key carries no period (RFC 4226 has no time step), so parse, write,
    // parse turned 60 into the default 30. A period on an hotp URI is checked, then ignored.
    func testAPeriodOnAnHOTPURIIsIgnored() throws {
        let uri = "otpauth://hotp/X:alice?secret=MZXW6&counter=5&period=60"
        let parsed = try OTPAuthURI(parsing: uri)
        XCTAssertEqual(parsed.hotpCounter, 5)
        XCTAssertEqual(parsed.parameters.period, OTPParameters.standard.period)
        XCTAssertEqual(try OTPAuthURI(parsing: parsed.uriString), parsed)
        XCTAssertThrowsError(try OTPAuthURI(parsing: "otpauth://hotp/X:alice?secret=MZXW6&counter=5&period=x")) {
            XCTAssertEqual($0 as? OTPAuthURIError, .invalidPeriod("x"))
        }
    }
}
