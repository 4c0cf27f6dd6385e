import Foundation
import XCTest

/// Tests/fixtures/wire-golden.txt: name, then a frame in hex. Compiled by TwoFactorWireTests and,
/// through a symlink, by PAMTwoFactorTests (the module's encoder against the same frames).
enum GoldenFrames {
    /// How many frames the file holds; test_wire_golden.py checks the same count.
    static let count = 9

    static func load(file: StaticString = #filePath, line: UInt = #line) throws -> [String: [UInt8]] {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/wire-golden.txt")
        var result: [String: [UInt8]] = [:]
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            XCTAssertEqual(parts.count, 2, "bad golden line: \(line)")
            var bytes: [UInt8] = []
            var index = parts[1].startIndex
            while index < parts[1].endIndex {
                let next = parts[1].index(index, offsetBy: 2)
                bytes.append(UInt8(parts[1][index..<next], radix: 16)!)
                index = next
            }
            result[String(parts[0])] = bytes
        }
        XCTAssertEqual(result.count, count, file: file, line: line)
        return result
    }
}
