import Foundation
import XCTest
@testable import TwoFactorWire

/// The codec against golden frames written by hand from docs/PROTOCOL.md. The same frames are
/// checked by the Python test client, so both sides of the tests speak one protocol.
final class WireCodecTests: XCTestCase {
    private func golden() throws -> [String: [UInt8]] { try GoldenFrames.load() }

    private func roundTrip(_ message: WireMessage, _ expected: [UInt8]?,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        let frame = message.encodedFrame()
        XCTAssertEqual(frame, expected, file: file, line: line)
        let length = try WireMessage.payloadLength(header: Array(frame[0..<4]),
                                                   limit: WireProtocol.maxRequestLength)
        XCTAssertEqual(length, frame.count - 4, file: file, line: line)
        XCTAssertEqual(try WireMessage.decode(payload: Array(frame[4...])), message, file: file, line: line)
    }

    func testRequestsMatchGoldenFrames() throws {
        let vectors = try golden()
        var verify = WireMessage(operation: .verify)
        try verify.append(.user, string: "alice")
        try verify.append(.code, string: "123456")
        try verify.append(.service, string: "sshd")
        try roundTrip(verify, vectors["verify_request"])
        try verify.append(.remoteHost, string: "192.0.2.7")
        try verify.append(.tty, string: "pts/0")
        try roundTrip(verify, vectors["verify_request_context"])

        var check = WireMessage(operation: .check)
        try check.append(.user, string: "bob")
        try roundTrip(check, vectors["check_request"])

        // Root's adminEnroll of an HOTP key with one imported scratch code (fields added at the
        // end of the tables for HOTP and the google-authenticator import).
        var adminEnroll = WireMessage(operation: .adminEnroll)
        try adminEnroll.append(.user, string: "bob")
        try adminEnroll.append(.secret, string: "JBSWY3DPEHPK3PXP")
        try adminEnroll.append(.otpKind, string: "hotp")
        adminEnroll.append(.counter, uint64: 5)
        adminEnroll.append(.importedCodes, bool: true)
        try adminEnroll.append(.recoveryCode, string: "12345678")
        try roundTrip(adminEnroll, vectors["admin_enroll_request"])
    }

    func testResponsesMatchGoldenFrames() throws {
        let vectors = try golden()
        var accepted = WireMessage(status: .accepted)
        accepted.append(.method, uint8: VerificationMethod.recoveryCode.rawValue)
        accepted.append(.recoveryCodesLeft, uint32: 3)
        try roundTrip(accepted, vectors["accepted_recovery"])
        XCTAssertEqual(accepted.uint32(.recoveryCodesLeft), 3)

        var locked = WireMessage(status: .lockedOut)
        locked.append(.lockedUntil, uint64: 1_796_000_000)
        try roundTrip(locked, vectors["locked_out"])

        var wrong = WireMessage(status: .wrongCode)
        wrong.append(.clockOffsetMicros, int64: -12_345_678)
        try roundTrip(wrong, vectors["wrong_code_clock"])
        XCTAssertEqual(wrong.int64(.clockOffsetMicros), -12_345_678)

        var account = WireMessage(code: 0)
        try account.append(.user, string: "carol")
        account.append(.isEnrolled, bool: true)
        var list = WireMessage(status: .ok)
        try list.append(.account, nested: account)
        try roundTrip(list, vectors["list_nested"])
        let nested = try list.allNested(.account)
        XCTAssertEqual(nested.count, 1)
        XCTAssertEqual(nested.first?.string(.user), "carol")
        XCTAssertEqual(nested.first?.bool(.isEnrolled), true)

        try roundTrip(WireMessage(status: .ok), vectors["empty_status_ok"])
    }

    func testRepeatedFieldsKeepOrderAndSingleReadersTakeTheFirst() throws {
        var message = WireMessage(status: .ok)
        for code in ["AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"] { try message.append(.recoveryCode, string: code) }
        XCTAssertEqual(message.allStrings(.recoveryCode), ["AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"])
        XCTAssertEqual(message.string(.recoveryCode), "AAAA-BBBB-CCCC")
        XCTAssertNil(message.string(.user))
    }

    func testUnknownTagsAreKeptForTheReaderToSkip() throws {
        let payload: [UInt8] = [1, 0x01, 0xEE, 0, 1, 7, 0x01, 0, 1, 0x61]
        let message = try WireMessage.decode(payload: payload)
        XCTAssertEqual(message.string(.user), "a")
        XCTAssertEqual(message.fields.count, 2)
    }

    func testVersionIsReportedNotRejectedByTheCodec() throws {
        let message = try WireMessage.decode(payload: [9, 0x01])
        XCTAssertEqual(message.version, 9)
        XCTAssertEqual(message.operation, .check)
    }

    func testMalformedInputIsAnErrorNotATrap() {
        XCTAssertThrowsError(try WireMessage.decode(payload: [])) { XCTAssertEqual($0 as? WireError, .emptyFrame) }
        XCTAssertThrowsError(try WireMessage.decode(payload: [1])) { XCTAssertEqual($0 as? WireError, .emptyFrame) }
        // A field whose length runs past the payload.
        XCTAssertThrowsError(try WireMessage.decode(payload: [1, 2, 0x01, 0, 9, 0x61])) {
            XCTAssertEqual($0 as? WireError, .malformedField)
        }
        // A field header cut short.
        XCTAssertThrowsError(try WireMessage.decode(payload: [1, 2, 0x01, 0])) {
            XCTAssertEqual($0 as? WireError, .malformedField)
        }
        XCTAssertThrowsError(try WireMessage.payloadLength(header: [0, 0, 0x20, 1], limit: WireProtocol.maxRequestLength)) {
            XCTAssertEqual($0 as? WireError, .frameTooLarge)
        }
        XCTAssertThrowsError(try WireMessage.payloadLength(header: [0xff, 0xff, 0xff, 0xff], limit: WireProtocol.maxResponseLength)) {
            XCTAssertEqual($0 as? WireError, .frameTooLarge)
        }
        XCTAssertThrowsError(try WireMessage.payloadLength(header: [0, 0, 0, 1], limit: WireProtocol.maxRequestLength)) {
            XCTAssertEqual($0 as? WireError, .emptyFrame)
        }
        XCTAssertThrowsError(try WireMessage.payloadLength(header: [0, 0], limit: WireProtocol.maxRequestLength)) {
            XCTAssertEqual($0 as? WireError, .truncated)
        }
        // Random garbage never traps: it decodes to a message that encodes back to the very same
        // bytes (the codec is exact), or it is refused as too short or malformed.
        var generator = SystemRandomNumberGenerator()
        var decoded = 0
        for _ in 0..<2000 {
            let length = Int.random(in: 0..<64, using: &generator)
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            do {
                let message = try WireMessage.decode(payload: bytes)
                decoded += 1
                XCTAssertEqual(message.encodedPayload(), bytes)
            } catch {
                XCTAssertTrue(error == .emptyFrame || error == .malformedField, "\(error) for \(bytes)")
                XCTAssertTrue(length < 2 || error == .malformedField)
            }
        }
        XCTAssertGreaterThan(decoded, 0)
    }

    func testOversizedFieldIsRefusedWhenBuilding() {
        var message = WireMessage(operation: .verify)
        XCTAssertThrowsError(try message.append(.code, bytes: [UInt8](repeating: 0x31, count: 70_000))) {
            XCTAssertEqual($0 as? WireError, .fieldTooLong)
        }
        XCTAssertTrue(message.fields.isEmpty)
    }

    func testTypedReadersRejectWrongWidths() throws {
        var message = WireMessage(status: .ok)
        try message.append(.failures, bytes: [1, 2])
        XCTAssertNil(message.uint32(.failures))
        XCTAssertNil(message.uint64(.failures))
        XCTAssertNil(message.bool(.failures))
    }

    // MARK: WireFrameWriter (the one encoder; encodedFrame and the PAM module use it)

    private func write(capacity: Int, _ body: (inout WireFrameWriter) throws(WireError) -> Void,
                       limit: Int = Int(UInt32.max)) throws(WireError) -> [UInt8] {
        var storage = [UInt8](repeating: 0xEE, count: capacity)
        return try storage.withUnsafeMutableBufferPointer { (buffer) throws(WireError) -> [UInt8] in
            var writer = try WireFrameWriter(into: buffer, code: Operation.check.rawValue)
            try body(&writer)
            let length = try writer.finish(limit: limit)
            XCTAssertEqual(length, writer.count)
            return Array(buffer[0..<length])
        }
    }

    func testWriterFillsAnExactBufferAndNothingMore() throws {
        let vectors = try golden()
        let frame = try write(capacity: 12) { (writer) throws(WireError) in try writer.append(.user, Array("bob".utf8)) }
        XCTAssertEqual(frame, vectors["check_request"])
        // One byte short: refused, never written past the end (the writer cannot grow a buffer).
        XCTAssertThrowsError(try write(capacity: 11) { (writer) throws(WireError) in try writer.append(.user, Array("bob".utf8)) }) {
            XCTAssertEqual($0 as? WireError, .bufferTooSmall)
        }
        XCTAssertThrowsError(try write(capacity: 5) { _ in }) { XCTAssertEqual($0 as? WireError, .bufferTooSmall) }
    }

    func testWriterRefusesOversizedFieldsAndFrames() throws {
        let long = [UInt8](repeating: 0x61, count: WireProtocol.maxFieldLength + 1)
        XCTAssertThrowsError(try write(capacity: 70_000) { (writer) throws(WireError) in try writer.append(.code, long) }) {
            XCTAssertEqual($0 as? WireError, .fieldTooLong)
        }
        let user = [UInt8](repeating: 0x61, count: 100)
        XCTAssertThrowsError(try write(capacity: 200, { (writer) throws(WireError) in try writer.append(.user, user) }, limit: 100)) {
            XCTAssertEqual($0 as? WireError, .frameTooLarge)
        }
        XCTAssertEqual(try write(capacity: 200, { (writer) throws(WireError) in try writer.append(.user, user) }, limit: 105).count, 109)
    }
}
