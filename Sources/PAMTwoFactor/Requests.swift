// The module's two requests, check and verify, encoded by the codec's WireFrameWriter straight
// into a SecretBytes buffer: no reallocation leaves a copy of the code behind, and the bytes are
// the golden frames' (Tests/PAMTwoFactorTests checks them against Tests/fixtures/wire-golden.txt).
// Pure: the test build (Sources/PAMTwoFactorPure) compiles this same file.

/// Which PAM call asks `check` (the wire's `phase` field, docs/PROTOCOL.md).
enum CheckPhase: UInt8 {
    case authentication = 0
    /// pam_sm_acct_mgmt: the first factor has succeeded; enrollment at login happens here.
    case accountManagement = 1
    /// pam_sm_setcred(PAM_ESTABLISH_CRED): the login succeeded; a grace login is counted.
    case credentials = 2
    /// No passwd entry for the name: reported for the audit log only.
    case unknownUser = 3
}

enum Requests {
    /// Longest service, remote host or tty value sent as context; a longer one is left out.
    static let maxContextLength = 1024
    /// Header, version, code and the longest user field.
    static var userCapacity: Int { WireProtocol.headerLength + 2 + 3 + Product.maxUserNameLength }
    /// The three context fields at their longest.
    static var contextCapacity: Int { 3 * (3 + maxContextLength) }
    /// Room for the largest check request: user, context and the phase (one byte).
    static var checkCapacity: Int { userCapacity + contextCapacity + 3 + 1 }
    /// Room for the largest verify request: user, code and context.
    static var verifyCapacity: Int { userCapacity + 3 + CodeShape.maxLength + contextCapacity }

    /// check (user, service, remoteHost, tty): does this login need a code? The daemon's login
    /// policy matches the remote host against exempt_networks, so it is sent here too.
    static func check(user: UnsafeBufferPointer<UInt8>, service: UnsafeBufferPointer<UInt8>? = nil,
                      remoteHost: UnsafeBufferPointer<UInt8>? = nil, tty: UnsafeBufferPointer<UInt8>? = nil,
                      phase: CheckPhase = .authentication, into request: inout SecretBytes) throws(WireError) {
        // The buffer has room for the context, not for a longer name than the daemon accepts.
        if user.count > Product.maxUserNameLength { throw WireError.bufferTooSmall }
        try request.write { (buffer) throws(WireError) in
            var writer = try WireFrameWriter(into: buffer, code: Operation.check.rawValue)
            try writer.append(.user, user)
            try appendContext(&writer, service: service, remoteHost: remoteHost, tty: tty)
            if phase != .authentication { try writer.append(.phase, CollectionOfOne(phase.rawValue)) }
            return try writer.finish(limit: WireProtocol.maxRequestLength)
        }
    }

    /// enrollBegin, enrollConfirm (with the code) or enrollCancel for `user`: enrollment at login.
    static func enrollment(_ operation: Operation, user: UnsafeBufferPointer<UInt8>, code: UnsafeBufferPointer<UInt8>? = nil,
                           into request: inout SecretBytes) throws(WireError) {
        try request.write { (buffer) throws(WireError) in
            var writer = try WireFrameWriter(into: buffer, code: operation.rawValue)
            try writer.append(.user, user)
            if let code { try writer.append(.code, code) }
            // Ask for the QR code drawn as text (the module links no QR library).
            if operation == .enrollBegin { try writer.append(.qrText, EmptyCollection<UInt8>()) }
            return try writer.finish(limit: WireProtocol.maxRequestLength)
        }
    }

    static func appendContext(_ writer: inout WireFrameWriter, service: UnsafeBufferPointer<UInt8>?,
                              remoteHost: UnsafeBufferPointer<UInt8>?, tty: UnsafeBufferPointer<UInt8>?) throws(WireError) {
        if let service, isSendableContext(service) { try writer.append(.service, service) }
        if let remoteHost, isSendableContext(remoteHost) { try writer.append(.remoteHost, remoteHost) }
        if let tty, isSendableContext(tty) { try writer.append(.tty, tty) }
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
            try appendContext(&writer, service: service, remoteHost: remoteHost, tty: tty)
            return try writer.finish(limit: WireProtocol.maxRequestLength)
        }
    }

    /// A PAM item is only context for the audit log: it is sent when it is non-empty, not long
    /// and printable ASCII, since the daemon could refuse the whole request for anything else.
    static func isSendableContext(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
        value.count > 0 && value.count <= maxContextLength && value.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
}
