import Foundation
import XCTest
@testable import TwoFactorWire

/// Product.swift holds the names, limits and messages every part shares. Docs and scripts may
/// spell them out as text; these tests hold that text to the one definition.
final class ProductTests: XCTestCase {
    private let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Every /run/twofactor/...sock written in the docs, the example config, the systemd unit,
    /// the scripts and the integration tests is the default socket, and the places that must
    /// name it do.
    func testEveryWrittenDefaultSocketPathIsTheOneDefinition() throws {
        let pattern = try NSRegularExpression(pattern: #"/run/twofactor/[A-Za-z0-9_.-]*\.sock\b"#)
        var files = ["README.md", "config/twofactord.conf", "systemd/twofactord.socket", "docs/PROTOCOL.md"]
        for directory in ["docs", "scripts", "Tests/integration"] {
            for name in try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(directory).path).sorted() {
                files.append(directory + "/" + name)
            }
        }
        var mentions: [String: Int] = [:]
        for file in Set(files).sorted() {
            guard let text = try? read(file) else { continue }  // binaries, directories
            let range = NSRange(text.startIndex..., in: text)
            for match in pattern.matches(in: text, range: range) {
                XCTAssertEqual(String(text[Range(match.range, in: text)!]), Product.defaultSocket, file)
                mentions[file, default: 0] += 1
            }
        }
        for file in ["README.md", "config/twofactord.conf", "systemd/twofactord.socket", "docs/PROTOCOL.md",
                     "docs/twofactord.8", "docs/pam_twofactor.8", "docs/twofactor.1"] {
            XCTAssertNotNil(mentions[file], "\(file) no longer names the default socket \(Product.defaultSocket)")
        }
        // scripts/daemon-service builds it from its run directory.
        let service = try read("scripts/daemon-service")
        XCTAssertTrue(service.contains("rundir=${TWOFACTOR_SERVICE_RUNDIR:-/run/twofactor}"))
        XCTAssertTrue(service.contains("socket=$rundir/twofactord.sock"))
        XCTAssertEqual("/run/twofactor/twofactord.sock", Product.defaultSocket)
    }

    func testPrintableKeepsPrintableASCIIOnly() {
        XCTAssertEqual(printable("alice"), "alice")
        XCTAssertEqual(printable("a \"quoted\" 'name' = x"), "a \"quoted\" 'name' = x")
        XCTAssertEqual(printable("evil\nverify account=root"), "evil?verify account=root")
        XCTAssertEqual(printable("\u{1b}[2Jx\u{7f}\u{85}"), "?[2Jx???")  // ESC, DEL, C1 NEL (2 bytes)
        XCTAssertEqual(printable("jos\u{e9}"), "jos??")                   // each non-ASCII byte
        XCTAssertEqual(printable("a\u{202e}b"), "a???b")                  // bidirectional override
        XCTAssertEqual(printable([0x41, 0xff, 0x00, 0x42]), "A??B")       // not UTF-8, NUL
        XCTAssertEqual(printable(String(repeating: "x", count: 10), limit: 4), "xxxx...")
        XCTAssertEqual(printable(String(repeating: "x", count: 4), limit: 4), "xxxx")
        XCTAssertEqual(printable("", limit: 0), "")
        XCTAssertEqual(printable("x", limit: 0), "...")
    }

    func testMessagesAndLimits() {
        XCTAssertEqual(Product.maxUserNameLength, 256)
        XCTAssertEqual(Product.incorrectCode(clockOffsetMicros: nil), "Incorrect two-factor authentication code")
        XCTAssertEqual(Product.incorrectCode(clockOffsetMicros: -120_400_000),
                       "Incorrect two-factor authentication code\nThe server's clock may be wrong (off by about 120 seconds); please tell the administrator")
        XCTAssertEqual(Product.clockHint(offsetMicros: 90_500_000),
                       "The server's clock may be wrong (off by about 91 seconds); please tell the administrator")
        XCTAssertEqual(Product.clockHint(offsetMicros: Int64.min).contains("9223372036855"), true)  // no overflow
    }
}
