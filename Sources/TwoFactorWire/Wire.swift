// The twofactord wire protocol, version 1. docs/PROTOCOL.md describes it for people; this file is
// the single definition for code. It is compiled twice: as the TwoFactorWire module (daemon,
// command line, tests) and, through a symlink, inside the Embedded Swift PAM module. So it uses
// only what Embedded Swift has: no Foundation, no existentials, typed throws only.
//
// Frame:   u32 big-endian payload length | payload
// Payload: u8 version | u8 code (an Operation in requests, a Status in responses) | fields
// Field:   u8 tag | u16 big-endian value length | value bytes
// Integers inside fields are big-endian; strings are UTF-8 without a terminator.

public enum WireProtocol {
    public static let version: UInt8 = 1
    /// Largest request payload the daemon reads. Requests carry a handful of short strings.
    public static let maxRequestLength = 8 * 1024
    /// Largest response payload a client accepts (an admin list of many accounts).
    public static let maxResponseLength = 1024 * 1024
    /// Longest single field value; u16 length on the wire.
    public static let maxFieldLength = 65_535
    public static let headerLength = 4
}

/// What a request asks for.
public enum Operation: UInt8 {
    /// Does the account have 2FA? Answers `enrolled`, `notEnrolled` or `exempt` (PAM asks this
    /// first), with the login policy's rule (docs/PROTOCOL.md).
    case check = 0x01
    /// Verify a TOTP or recovery code: `accepted`, `wrongCode`, `codeReused`, `lockedOut`, `notEnrolled`.
    case verify = 0x02
    case enrollBegin = 0x10
    case enrollConfirm = 0x11
    case enrollCancel = 0x12
    case regenerateRecoveryCodes = 0x13
    case disable = 0x14
    case status = 0x15
    case listAccounts = 0x20
    case resetAccount = 0x21
    case unlockAccount = 0x22
    case clockStatus = 0x30
    /// Root sets another account's key: a hardware token's secret or an imported
    /// google-authenticator file (`twofactor admin enroll`, `admin import-google-authenticator`).
    case adminEnroll = 0x23
    /// The store's state (kind, reachable, last error), this node's name and the clock verdict.
    case health = 0x31
}

/// How a request went.
public enum Status: UInt8 {
    case ok = 0x00
    case accepted = 0x01
    case enrolled = 0x02
    case notEnrolled = 0x03
    /// check: the login policy exempts this login from the code (a network or group exemption).
    case exempt = 0x04
    case wrongCode = 0x10
    case codeReused = 0x11
    case lockedOut = 0x12
    case alreadyEnrolled = 0x13
    case noPendingEnrollment = 0x14
    case codeRequired = 0x15
    case permissionDenied = 0x20
    case badRequest = 0x21
    case unsupportedVersion = 0x22
    case unknownOperation = 0x23
    case internalError = 0x24
    case busy = 0x25
}

/// Field tags. Unknown tags are skipped by readers, so a version can grow optional fields.
public enum FieldTag: UInt8 {
    // Request fields.
    case user = 0x01
    case code = 0x02
    case service = 0x03
    case remoteHost = 0x04
    case tty = 0x05
    // Verification results.
    case method = 0x10              // u8: VerificationMethod
    case recoveryCodesLeft = 0x11   // u32
    case lockedUntil = 0x12         // u64 unix seconds
    case message = 0x13             // text for people, never a secret
    case clockOffsetMicros = 0x14   // i64, sent with a rejection when the clock looks wrong
    // Enrollment.
    case secret = 0x20              // base32 text
    case uri = 0x21                 // otpauth:// URI
    case recoveryCode = 0x22        // repeated, one per code
    case digits = 0x23              // u8
    case period = 0x24              // u32 seconds
    case algorithm = 0x25           // text: SHA1, SHA256, SHA512
    case issuer = 0x26              // text
    // Account status.
    case enrolledSince = 0x30       // u64 unix seconds
    case lastUsed = 0x31            // u64 unix seconds
    case failures = 0x33            // u32 consecutive failures
    case pending = 0x34             // u8 bool: an enrollment awaits confirmation
    case isEnrolled = 0x35          // u8 bool
    case account = 0x36             // nested fields, repeated in listAccounts
    case driftSteps = 0x37          // i64 learned clock drift of the account, in steps
    // Clock check.
    case clockState = 0x40          // text: ok, warning, bad, unknown
    case clockServer = 0x43         // text
    case clockDelayMicros = 0x42    // i64
    case clockStratum = 0x44        // u8
    case clockMeasuredAt = 0x45     // u64 unix seconds
    case kernelSynchronized = 0x46  // u8 bool
    case kernelErrorMicros = 0x47   // i64 estimated error from adjtimex
    case clockRemedy = 0x48         // text
    case clockCompensation = 0x49   // u8 bool
    case clockFalseticker = 0x4A    // text, repeated: a server outvoted by the others
    case clockCorrectionMicros = 0x4B // i64 offset verification time is corrected by; absent: not corrected
    // HOTP and adminEnroll.
    case otpKind = 0x27             // text: totp, hotp
    case counter = 0x28             // u64 HOTP counter (the next one expected)
    case window = 0x29              // u32 steps either side (TOTP) or counters ahead (HOTP) for this account
    case lastStep = 0x2A            // i64 highest TOTP step already used (codes up to it are replays)
    case replace = 0x2B             // u8 bool: replace an existing enrollment
    case importedCodes = 0x2C       // u8 bool: the recoveryCode fields are the account's codes (none generated)
    // Login policy (check answers).
    case rule = 0x50                // text: the policy rule that decided (docs/PROTOCOL.md)
    case ruleDetail = 0x51          // text: the network or group that matched
    case required = 0x52            // u8 bool: an unenrolled account must not log in
    case phase = 0x53               // u8 (check request): 0 auth, 1 account management, 2 credentials
    case qrText = 0x54              // enrollBegin: present (empty) in the request asks for the otpauth URI
                                    // drawn as a QR code in Unicode half blocks, the answer's text
    // Health.
    case storeKind = 0x58           // text: sqlite, postgresql
    case storeLocation = 0x59       // text: the store's URL, never its password
    case storeReachable = 0x5A      // u8 bool: a read just now succeeded
    case storeLatencyMicros = 0x5B  // i64: how long that read took
    case storeLastError = 0x5C      // text: the last store failure the daemon saw
    case storeLastErrorAt = 0x5D    // u64 unix seconds
    case storeErrors = 0x5E         // u32: store failures since the daemon started
    case nodeName = 0x5F            // text: node_name
    // Paging of listAccounts (an answer holds at most maxResponseLength bytes of accounts).
    case listAfter = 0x60           // text, request: the page starts after this user (byte order); "" = first page
    case listMore = 0x61            // u8 bool, answer: more accounts follow; ask again with listAfter = the last user
}

public enum VerificationMethod: UInt8 {
    case totp = 1
    case recoveryCode = 2
    case hotp = 3
}

public enum WireError: Error, Equatable {
    case truncated
    case frameTooLarge
    case emptyFrame
    case fieldTooLong
    case malformedField
    /// The caller's buffer cannot hold the frame (WireFrameWriter never grows it).
    case bufferTooSmall
}

/// The one encoder of the frame layout. Writes a frame straight into memory the caller owns and
/// never allocates: the PAM module passes its zeroed-on-free SecretBytes buffer, so no
/// reallocation leaves a copy of a code behind. WireMessage.encodedFrame() uses it too.
/// Non-copyable, so two writers cannot interleave fields in one buffer.
public struct WireFrameWriter: ~Copyable {
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    /// Bytes written so far, the length prefix included.
    public private(set) var count = 0

    /// Starts a frame: the length prefix (patched by `finish`), the version and the code.
    public init(into buffer: UnsafeMutableBufferPointer<UInt8>, code: UInt8,
                version: UInt8 = WireProtocol.version) throws(WireError) {
        self.buffer = buffer
        if buffer.count < WireProtocol.headerLength + 2 { throw WireError.bufferTooSmall }
        for _ in 0..<WireProtocol.headerLength { put(0) }  // the length, patched by `finish`
        put(version)
        put(code)
    }

    /// One field: tag, u16 big-endian length, value.
    public mutating func append<Bytes: Collection>(tag: UInt8, _ value: Bytes) throws(WireError)
    where Bytes.Element == UInt8 {
        let length = value.count
        if length > WireProtocol.maxFieldLength { throw WireError.fieldTooLong }
        if buffer.count - count < 3 + length { throw WireError.bufferTooSmall }
        put(tag)
        put(UInt8(truncatingIfNeeded: length >> 8))
        put(UInt8(truncatingIfNeeded: length))
        for byte in value { put(byte) }
    }

    public mutating func append<Bytes: Collection>(_ tag: FieldTag, _ value: Bytes) throws(WireError)
    where Bytes.Element == UInt8 {
        try append(tag: tag.rawValue, value)
    }

    /// Writes the payload length into the prefix and returns the frame's length. A payload over
    /// `limit` (the reader's limit for this kind of frame) is refused rather than sent.
    public mutating func finish(limit: Int = Int(UInt32.max)) throws(WireError) -> Int {
        let payloadLength = count - WireProtocol.headerLength
        if payloadLength > limit || payloadLength > Int(UInt32.max) { throw WireError.frameTooLarge }
        buffer[0] = UInt8(truncatingIfNeeded: payloadLength >> 24)
        buffer[1] = UInt8(truncatingIfNeeded: payloadLength >> 16)
        buffer[2] = UInt8(truncatingIfNeeded: payloadLength >> 8)
        buffer[3] = UInt8(truncatingIfNeeded: payloadLength)
        return count
    }

    /// The frame length `fields` need, for sizing a buffer.
    public static func frameLength(fields: [WireField]) -> Int {
        var length = WireProtocol.headerLength + 2
        for field in fields { length += 3 + field.value.count }
        return length
    }

    /// Callers check the room first.
    private mutating func put(_ byte: UInt8) {
        buffer[count] = byte
        count += 1
    }
}

public struct WireField: Equatable {
    public var tag: UInt8
    public var value: [UInt8]

    public init(tag: UInt8, value: [UInt8]) {
        self.tag = tag
        self.value = value
    }
}

/// A request or a response: a code and its fields.
public struct WireMessage: Equatable {
    public var version: UInt8
    public var code: UInt8
    public var fields: [WireField]

    public init(code: UInt8, version: UInt8 = WireProtocol.version) {
        self.version = version
        self.code = code
        self.fields = []
    }

    public init(operation: Operation) { self.init(code: operation.rawValue) }
    public init(status: Status) { self.init(code: status.rawValue) }

    public var operation: Operation? { Operation(rawValue: code) }
    public var status: Status? { Status(rawValue: code) }

    // MARK: Building

    public mutating func append(_ tag: FieldTag, bytes: [UInt8]) throws(WireError) {
        if bytes.count > WireProtocol.maxFieldLength { throw WireError.fieldTooLong }
        fields.append(WireField(tag: tag.rawValue, value: bytes))
    }

    public mutating func append(_ tag: FieldTag, string: String) throws(WireError) {
        try append(tag, bytes: Array(string.utf8))
    }

    public mutating func append(_ tag: FieldTag, uint8 value: UInt8) {
        fields.append(WireField(tag: tag.rawValue, value: [value]))
    }

    public mutating func append(_ tag: FieldTag, bool value: Bool) {
        append(tag, uint8: value ? 1 : 0)
    }

    public mutating func append(_ tag: FieldTag, uint32 value: UInt32) {
        fields.append(WireField(tag: tag.rawValue, value: WireMessage.bigEndianBytes(UInt64(value), count: 4)))
    }

    public mutating func append(_ tag: FieldTag, uint64 value: UInt64) {
        fields.append(WireField(tag: tag.rawValue, value: WireMessage.bigEndianBytes(value, count: 8)))
    }

    public mutating func append(_ tag: FieldTag, int64 value: Int64) {
        append(tag, uint64: UInt64(bitPattern: value))
    }

    /// Nests another message's fields as one field (used for repeated records).
    public mutating func append(_ tag: FieldTag, nested: WireMessage) throws(WireError) {
        try append(tag, bytes: WireMessage.encodeFields(nested.fields))
    }

    // MARK: Reading

    public func bytes(_ tag: FieldTag) -> [UInt8]? {
        for field in fields where field.tag == tag.rawValue { return field.value }
        return nil
    }

    public func allBytes(_ tag: FieldTag) -> [[UInt8]] {
        var result: [[UInt8]] = []
        for field in fields where field.tag == tag.rawValue { result.append(field.value) }
        return result
    }

    public func string(_ tag: FieldTag) -> String? {
        guard let value = bytes(tag) else { return nil }
        return String(decoding: value, as: UTF8.self)
    }

    public func allStrings(_ tag: FieldTag) -> [String] {
        var result: [String] = []
        for value in allBytes(tag) { result.append(String(decoding: value, as: UTF8.self)) }
        return result
    }

    public func uint8(_ tag: FieldTag) -> UInt8? {
        guard let value = bytes(tag), value.count == 1 else { return nil }
        return value[0]
    }

    public func bool(_ tag: FieldTag) -> Bool? {
        guard let value = uint8(tag) else { return nil }
        return value != 0
    }

    public func uint32(_ tag: FieldTag) -> UInt32? {
        guard let value = bytes(tag), value.count == 4 else { return nil }
        return UInt32(truncatingIfNeeded: WireMessage.readBigEndian(value, from: 0, count: 4))
    }

    public func uint64(_ tag: FieldTag) -> UInt64? {
        guard let value = bytes(tag), value.count == 8 else { return nil }
        return WireMessage.readBigEndian(value, from: 0, count: 8)
    }

    public func int64(_ tag: FieldTag) -> Int64? {
        guard let value = uint64(tag) else { return nil }
        return Int64(bitPattern: value)
    }

    public func allNested(_ tag: FieldTag) throws(WireError) -> [WireMessage] {
        var result: [WireMessage] = []
        for value in allBytes(tag) {
            var nested = WireMessage(code: 0)
            nested.fields = try WireMessage.decodeFields(value, from: 0)
            result.append(nested)
        }
        return result
    }

    // MARK: Encoding and decoding

    /// The payload (version, code, fields) without the length prefix.
    public func encodedPayload() -> [UInt8] {
        Array(encodedFrame().dropFirst(WireProtocol.headerLength))
    }

    /// Length prefix plus payload, ready to write to the socket.
    public func encodedFrame() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: WireFrameWriter.frameLength(fields: fields))
        let written = out.withUnsafeMutableBufferPointer { buffer in write(into: buffer) }
        // The buffer is sized exactly and `append` refuses values over the u16 limit when the
        // message is built, so only a field set by hand can fail here.
        guard written != nil else { fatalError("a wire field longer than 65535 bytes") }
        return out
    }

    /// The frame written by WireFrameWriter into `buffer`; its length, or nil when it does not fit.
    func write(into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int? {
        do {
            var writer = try WireFrameWriter(into: buffer, code: code, version: version)
            for field in fields { try writer.append(tag: field.tag, field.value) }
            return try writer.finish()
        } catch {
            return nil
        }
    }

    /// Decodes a payload. The version byte is returned as found: answering an unsupported
    /// version is the receiver's decision, not the codec's.
    public static func decode(payload: [UInt8]) throws(WireError) -> WireMessage {
        if payload.count < 2 { throw WireError.emptyFrame }
        var message = WireMessage(code: payload[1], version: payload[0])
        message.fields = try decodeFields(payload, from: 2)
        return message
    }

    /// Reads the length prefix and checks it against `limit`.
    public static func payloadLength(header: [UInt8], limit: Int) throws(WireError) -> Int {
        if header.count < WireProtocol.headerLength { throw WireError.truncated }
        let length = Int(readBigEndian(header, from: 0, count: 4))
        if length < 2 { throw WireError.emptyFrame }
        if length > limit { throw WireError.frameTooLarge }
        return length
    }

    /// Fields laid out as in a frame (for nesting): a frame of them without its header.
    static func encodeFields(_ fields: [WireField]) -> [UInt8] {
        var message = WireMessage(code: 0)
        message.fields = fields
        return Array(message.encodedFrame().dropFirst(WireProtocol.headerLength + 2))
    }

    static func decodeFields(_ bytes: [UInt8], from start: Int) throws(WireError) -> [WireField] {
        var fields: [WireField] = []
        var index = start
        while index < bytes.count {
            if bytes.count - index < 3 { throw WireError.malformedField }
            let tag = bytes[index]
            let length = Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
            index += 3
            if bytes.count - index < length { throw WireError.malformedField }
            fields.append(WireField(tag: tag, value: Array(bytes[index..<(index + length)])))
            index += length
        }
        return fields
    }

    static func bigEndianBytes(_ value: UInt64, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var shift = (count - 1) * 8
        while shift >= 0 {
            out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
            shift -= 8
        }
        return out
    }

    static func readBigEndian(_ bytes: [UInt8], from start: Int, count: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<count { value = value << 8 | UInt64(bytes[start + i]) }
        return value
    }
}
