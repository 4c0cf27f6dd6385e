// The module's two requests, check and verify, encoded by the codec's WireFrameWriter straight
// into a SecretBytes buffer: no reallocation leaves a copy of the code behind, and the bytes are
// the golden frames' (Tests/PAMTwoFactorTests checks them against Tests/fixtures/wire-golden.txt).
// Pure: the test build (Sources/PAMTwoFactorPure) compiles this same file.

enum Requests {
    /// Longest service, remote host or tty value sent as context; a longer one is left out.
    static let maxContextLength = 1024
    /// Room for the largest check request.
    static var checkCapacity: Int { WireProtocol.headerLength + 2 + 3 + Product.maxUserNameLength }
    /// Room for the largest verify request: user, code and three context fields.
    static var verifyCapacity: Int { checkCapacity + 3 + CodeShape.maxLength + 3 * (3 + maxContextLength) }

    /// check (user): does this account use two-factor authentication?
    static func check(user: UnsafeBufferPointer<UInt8>, into request: inout SecretBytes) throws(WireError) {
        try request.write { (buffer) throws(WireError) in
            var writer = try WireFrameWriter(into: buffer, code: Operation.check.rawValue)
            try writer.append(.user, user)
            return try writer.finish(limit: WireProtocol.maxRequestLength)
        }
    }

    /// verify (user, code, service, remoteHost, tty). Context that is missing or not
    /// `isSendableContext` is left out rather than sent.
    static func verify(user: UnsafeBufferPointer<UInt8>, code: UnsafeBufferPointer<UInt8>,
                       service: UnsafeBufferPointer<UInt8>?, remoteHost: UnsafeBufferPointer<UInt8>?,
                       tty: UnsafeBufferPointer<UInt8>?, into request: inout SecretBytes) throws(WireError) {
        try request.write { (buffer) throws(WireError) in
            var writer = try WireFrameWriter(into: buffer, code: Operation.verify.rawValue)
            try writer.append(.user, user)
            try writer.append(.code, code)
            if let service, isSendableContext(service) { try writer.append(.service, service) }
            if let remoteHost, isSendableContext(remoteHost) { try writer.append(.remoteHost, remoteHost) }
            if let tty, isSendableContext(tty) { try writer.append(.tty, tty) }
            return try writer.finish(limit: WireProtocol.maxRequestLength)
        }
    }

    /// A PAM item is only context for the audit log: it is sent when it is non-empty, not long
    /// and printable ASCII, since the daemon could refuse the whole request for anything else.
    static func isSendableContext(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
        value.count > 0 && value.count <= maxContextLength && value.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
}
