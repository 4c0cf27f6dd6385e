import XCTest
@testable import PAMTwoFactorPure

/// Every byte the module sends is a golden frame's (Tests/fixtures/wire-golden.txt), written by
/// the codec's WireFrameWriter into the module's own SecretBytes buffer (Requests.swift).
final class RequestEncodingTests: XCTestCase {
    private func withBytes<T>(_ text: String?, _ body: (UnsafeBufferPointer<UInt8>?) throws -> T) rethrows -> T {
        guard let text else { return try body(nil) }
        return try Array(text.utf8).withUnsafeBufferPointer { try body($0) }
    }

    private func check(user: String, context: String? = nil, phase: CheckPhase = .authentication) throws -> [UInt8] {
        var request = SecretBytes(capacity: Requests.checkCapacity)
        try withBytes(user) { (user) throws in
            try withBytes(context) { (context) throws in
                try Requests.check(user: user!, service: context, remoteHost: context, tty: context, phase: phase,
                                   into: &request)
            }
        }
        XCTAssertEqual(request.bytes.baseAddress, UnsafePointer(request.base), "written in place")
        return Array(request.bytes)
    }

    private func verify(user: String, code: String, service: String?, remoteHost: String?, tty: String?) throws -> [UInt8] {
        var request = SecretBytes(capacity: Requests.verifyCapacity)
        try withBytes(user) { (user) throws in
            try withBytes(code) { (code) throws in
                try withBytes(service) { (service) throws in
                    try withBytes(remoteHost) { (remoteHost) throws in
                        try withBytes(tty) { (tty) throws in
                            try Requests.verify(user: user!, code: code!, service: service, remoteHost: remoteHost,
                                                tty: tty, into: &request)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(request.bytes.baseAddress, UnsafePointer(request.base), "written in place")
        return Array(request.bytes)
    }

    func testTheModulesRequestsAreTheGoldenFrames() throws {
        let golden = try GoldenFrames.load()
        XCTAssertEqual(try check(user: "bob"), golden["check_request"])
        XCTAssertEqual(try verify(user: "alice", code: "123456", service: "sshd", remoteHost: "192.0.2.7", tty: "pts/0"),
                       golden["verify_request_context"])
        XCTAssertEqual(try verify(user: "alice", code: "123456", service: "sshd", remoteHost: nil, tty: nil),
                       golden["verify_request"])
    }

    func testContextThatCouldSpoilTheRequestIsLeftOut() throws {
        let golden = try GoldenFrames.load()
        let long = String(repeating: "h", count: Requests.maxContextLength + 1)
        for (remoteHost, tty) in [("", ""), ("host\n", "pts/0\u{1b}"), (long, "tty\u{7f}"), ("hôte", "\u{0}")] {
            XCTAssertEqual(try verify(user: "alice", code: "123456", service: "sshd", remoteHost: remoteHost, tty: tty),
                           golden["verify_request"], "\(remoteHost) \(tty)")
        }
        let longest = String(repeating: "h", count: Requests.maxContextLength)
        let frame = try verify(user: "alice", code: "123456", service: "sshd", remoteHost: longest, tty: nil)
        let message = try WireMessage.decode(payload: Array(frame[WireProtocol.headerLength...]))
        XCTAssertEqual(message.string(.remoteHost), longest)
        XCTAssertEqual(message.operation, .verify)
    }

    /// The buffers are sized for the largest request and never grow: one byte more is refused.
    func testTheLargestRequestsFitTheirFixedBuffers() throws {
        let user = String(repeating: "u", count: Product.maxUserNameLength)
        let code = String(repeating: "1", count: CodeShape.maxLength)
        let context = String(repeating: "c", count: Requests.maxContextLength)
        XCTAssertEqual(try check(user: user, context: context, phase: .credentials).count, Requests.checkCapacity)
        XCTAssertEqual(try verify(user: user, code: code, service: context, remoteHost: context, tty: context).count,
                       Requests.verifyCapacity)
        XCTAssertLessThanOrEqual(Requests.verifyCapacity - WireProtocol.headerLength, WireProtocol.maxRequestLength)
        XCTAssertThrowsError(try check(user: user + "u")) { XCTAssertEqual($0 as? WireError, .bufferTooSmall) }
        XCTAssertThrowsError(try check(user: user + "u", context: context, phase: .credentials)) {
            XCTAssertEqual($0 as? WireError, .bufferTooSmall)
        }
        XCTAssertThrowsError(try verify(user: user, code: code + "1", service: context, remoteHost: context, tty: context)) {
            XCTAssertEqual($0 as? WireError, .bufferTooSmall)
        }
    }

    /// check carries the login's context (the daemon matches the remote host against
    /// exempt_networks), left out like verify's when it is not sendable.
    func testCheckCarriesTheSendableContext() throws {
        let frame = try check(user: "bob", context: "192.0.2.7")
        let message = try WireMessage.decode(payload: Array(frame[WireProtocol.headerLength...]))
        XCTAssertEqual(message.operation, .check)
        XCTAssertEqual(message.string(.remoteHost), "192.0.2.7")
        XCTAssertEqual(message.string(.service), "192.0.2.7")
        XCTAssertEqual(try check(user: "bob", context: "bad\u{7}host"), try check(user: "bob"))
        let counted = try check(user: "bob", phase: .credentials)
        XCTAssertEqual(try WireMessage.decode(payload: Array(counted[WireProtocol.headerLength...])).uint8(.phase), 2)
    }
}
