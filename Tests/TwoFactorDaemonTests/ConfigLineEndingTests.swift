// Found by the config fuzzer (Tests/attack/fuzz, target "config"): in Swift "\r\n" is a single
// Character, so splitting the text on "\n" left a CRLF file as one line and a path value took
// every later line into itself (the settings after it were silently lost).
import XCTest
@testable import TwoFactorDaemon

final class ConfigLineEndingTests: XCTestCase {
    func testCRLFLineEndingsReadLikeLF() throws {
        let text = "socket = /run/t.sock\nsocket_mode = 0600\n# comment\nwindow = 3\n"
        let crlf = text.replacingOccurrences(of: "\n", with: "\r\n")
        let config = try ConfigParser.parse(crlf, file: "x.conf")
        XCTAssertEqual(config.socket, "/run/t.sock")
        XCTAssertEqual(config.socketMode, 0o600)
        XCTAssertEqual(config.window, 3)
        XCTAssertEqual(config, try ConfigParser.parse(text, file: "x.conf"))
    }

    func testCRLFErrorsNameTheRightLine() {
        // The fuzzer's input was "window 3\n"; with CRLF the message quoted the CR and LF.
        XCTAssertThrowsError(try ConfigParser.parse("window = 1\r\nwindow 3\r\n", file: "x.conf")) { error in
            XCTAssertEqual((error as? ConfigError)?.description, "x.conf:2: expected 'key = value', got 'window 3'")
        }
    }

    // Found by the config fuzzer's --print-config round trip: "postgres_database=#\t#" was the
    // database "#" (a '#' not after white space), printed as "postgres_database = #", which reads
    // back as a comment and an empty value the daemon refuses to start with.
    func testAValueNeverBeginsWithHash() throws {
        XCTAssertThrowsError(try ConfigParser.parse("issuer =#x\n", file: "x.conf")) { error in
            XCTAssertEqual((error as? ConfigError)?.line, 1)
        }
        XCTAssertEqual(try ConfigParser.parse("issuer = a=#b # note\n", file: "x.conf").issuer, "a=#b")
        var config = try ConfigParser.parse("issuer = Corp #1\n", file: "x.conf")
        XCTAssertEqual(config.issuer, "Corp")
        config.issuer = "x#y"
        XCTAssertEqual(try ConfigParser.parse(ConfigKeys.effectiveConfig(config), file: "x.conf"), config)
    }

    // "socket = /a\r " (a CR, then a space) kept the CR in the path, and --print-config's
    // "socket = /a\r\n" read back as "/a": a carriage return around a value is trimmed.
    func testACarriageReturnAroundAValueIsTrimmed() throws {
        XCTAssertEqual(try ConfigParser.parse("socket = /a\r \n", file: "x.conf").socket, "/a")
        XCTAssertEqual(try ConfigParser.parse("socket = \r/a\n", file: "x.conf").socket, "/a")
    }
}
