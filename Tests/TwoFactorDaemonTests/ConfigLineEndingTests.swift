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
}
