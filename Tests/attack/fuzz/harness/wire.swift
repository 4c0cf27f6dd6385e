// libFuzzer target "wire": the wire codec (Sources/TwoFactorWire/Wire.swift) and the PAM module's
// request encoder (Sources/PAMTwoFactor/Requests.swift, writing through the codec's
// WireFrameWriter into the module's SecretBytes buffer). Built from Sources/PAMTwoFactorPure, the
// symlinks to the files the Embedded Swift module compiles, as ordinary Swift (libFuzzer cannot
// drive Embedded Swift); Wire.swift is the daemon's codec too, so this covers the daemon's codec
// and the module's encoder and decoder path alike.
//
// Properties checked on every input:
//  - decode(payload:) either succeeds and encodedPayload() gives back exactly the input, or
//    throws emptyFrame (fewer than 2 bytes) / malformedField; nothing else.
//  - every nested field value that decodes re-encodes exactly; the typed readers agree with the
//    value lengths (uint8 needs 1 byte, uint32 4, uint64 8) and never trap.
//  - the other direction: a message built with the append API from the input round-trips
//    through encodedFrame(), payloadLength(header:limit:) and decode(payload:).
//  - payloadLength(header:limit:) on the input's first 4 bytes: the big-endian value when it is
//    in 2...limit, else emptyFrame (below 2) or frameTooLarge (above limit); truncated below 4.
//  - the module's requests, from the input split on 0xFF into user, code, service, remote host and
//    tty (a missing part is an unset PAM item): check succeeds exactly when the user fits
//    Product.maxUserNameLength; verify always succeeds within the module's limits (user name,
//    CodeShape.maxLength) whatever the context; the frame is written in place and is byte for byte
//    what WireMessage encodes for user, code and the context that is non-empty, at most 1024
//    bytes and printable ASCII (the rest is left out), in that order; the daemon decodes it within
//    its request limit. Beyond the limits the encoder throws or still writes the exact frame, and
//    never writes outside the buffer (AddressSanitizer).

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("wire property violated: \(message)")
}

func bigEndian32(_ bytes: ArraySlice<UInt8>) -> Int {
    bytes.reduce(0) { $0 << 8 | Int($1) }
}

func checkHeader(_ header: [UInt8], limit: Int) {
    let result: Result<Int, WireError>
    do throws(WireError) { result = .success(try WireMessage.payloadLength(header: header, limit: limit)) } catch {
        result = .failure(error)
    }
    guard header.count >= WireProtocol.headerLength else {
        if result != .failure(.truncated) { fail("short header \(header) gave \(result)") }
        return
    }
    let value = bigEndian32(header[0..<4])
    let expected: Result<Int, WireError> =
        value < 2 ? .failure(.emptyFrame) : value > limit ? .failure(.frameTooLarge) : .success(value)
    if result != expected { fail("header \(header) limit \(limit): got \(result), expected \(expected)") }
}

func checkReaders(_ message: WireMessage) {
    // Once per tag: the readers scan all fields, so once per field would be quadratic and slow
    // the fuzzer down on inputs of many small fields.
    var seen = Set<UInt8>()
    for field in message.fields where seen.insert(field.tag).inserted {
        guard let tag = FieldTag(rawValue: field.tag) else { continue }
        // The readers return the first field with the tag.
        guard let first = message.bytes(tag) else { fail("bytes(\(tag)) is nil for a present tag") }
        if (message.uint8(tag) != nil) != (first.count == 1) { fail("uint8 disagrees with length \(first.count)") }
        if (message.uint32(tag) != nil) != (first.count == 4) { fail("uint32 disagrees with length \(first.count)") }
        if (message.uint64(tag) != nil) != (first.count == 8) { fail("uint64 disagrees with length \(first.count)") }
        if let value = message.uint32(tag), bigEndian32(first[0..<4]) != Int(value) { fail("uint32 value") }
        if let value = message.int64(tag), UInt64(bitPattern: value) != message.uint64(tag) { fail("int64 value") }
        _ = message.string(tag)
        _ = message.allStrings(tag)
        if message.allBytes(tag).isEmpty { fail("allBytes(\(tag)) is empty for a present tag") }
        // Nested records (the account field of listAccounts): decode when well formed, and then
        // re-encode to exactly the field value.
        if let nested = try? message.allNested(tag) {
            let values = message.allBytes(tag)
            if nested.count != values.count { fail("allNested count") }
            for (record, value) in zip(nested, values) {
                var outer = WireMessage(code: 0)
                do throws(WireError) { try outer.append(tag, nested: record) } catch { fail("re-nesting threw \(error)") }
                if outer.fields.count != 1 || outer.fields[0].value != value { fail("nested re-encoding differs") }
            }
        }
    }
}

/// Builds a message from the input: version, code, then (tag, length byte, bytes) records.
func buildMessage(_ input: [UInt8]) -> WireMessage {
    var message = WireMessage(code: input.count > 1 ? input[1] : 0, version: input.first ?? 1)
    var index = 2
    while index + 2 <= input.count {
        let tag = input[index]
        let length = min(Int(input[index + 1]), input.count - index - 2)
        let value = Array(input[(index + 2)..<(index + 2 + length)])
        if let known = FieldTag(rawValue: tag) {
            // Use the typed appenders too, so their encodings are part of the round trip.
            switch length {
            case 1: message.append(known, uint8: value[0])
            case 4: message.append(known, uint32: UInt32(bigEndian32(value[0..<4])))
            case 8: message.append(known, uint64: value.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            default:
                do throws(WireError) { try message.append(known, bytes: value) } catch { fail("append threw \(error)") }
            }
        } else {
            message.fields.append(WireField(tag: tag, value: value))
        }
        index += 2 + length
    }
    return message
}

/// This harness's own rule for context the module may send (Requests.isSendableContext's doc).
func sendable(_ value: [UInt8]?) -> [UInt8]? {
    guard let value, !value.isEmpty, value.count <= 1024, value.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return nil }
    return value
}

/// The frame the daemon's side of the codec writes for these fields.
func expectedFrame(_ operation: Operation, _ fields: [(FieldTag, [UInt8])]) -> [UInt8] {
    var message = WireMessage(operation: operation)
    for (tag, value) in fields {
        do throws(WireError) { try message.append(tag, bytes: value) } catch { fail("append threw \(error)") }
    }
    return message.encodedFrame()
}

/// A frame the module wrote: in place, exact, and acceptable to the daemon.
func checkRequest(_ request: borrowing SecretBytes, expected: [UInt8]) {
    if request.bytes.baseAddress != UnsafePointer(request.base) { fail("request not written in place") }
    if request.count > request.capacity { fail("request count \(request.count) over capacity \(request.capacity)") }
    if Array(request.bytes) != expected { fail("module request \(Array(request.bytes)) is not \(expected)") }
    do throws(WireError) {
        let length = try WireMessage.payloadLength(header: Array(request.bytes.prefix(4)), limit: WireProtocol.maxRequestLength)
        if length != request.count - 4 { fail("request length prefix") }
    } catch {
        fail("the daemon would refuse the module's request: \(error)")
    }
}

func withOptionalBuffer<T>(_ bytes: [UInt8]?, _ body: (UnsafeBufferPointer<UInt8>?) -> T) -> T {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBufferPointer { body($0) }
}

func checkModuleRequests(_ input: [UInt8]) {
    let parts = input.split(separator: 0xFF, maxSplits: 4, omittingEmptySubsequences: false).map(Array.init)
    let user = parts.first ?? []
    let code = parts.count > 1 ? parts[1] : []
    let service: [UInt8]? = parts.count > 2 ? parts[2] : nil
    let remoteHost: [UInt8]? = parts.count > 3 ? parts[3] : nil
    let tty: [UInt8]? = parts.count > 4 ? parts[4] : nil
    let userFits = user.count <= Product.maxUserNameLength

    // check
    var check = SecretBytes(capacity: Requests.checkCapacity)
    do throws(WireError) {
        try user.withUnsafeBufferPointer { (buffer) throws(WireError) in try Requests.check(user: buffer, into: &check) }
        if !userFits { fail("check encoded a user name of \(user.count) bytes into its fixed buffer") }
        checkRequest(check, expected: expectedFrame(.check, [(.user, user)]))
    } catch {
        if userFits { fail("check failed for a user name of \(user.count) bytes: \(error)") }
        if error != .bufferTooSmall { fail("check threw \(error)") }
    }

    // verify
    let context: [(FieldTag, [UInt8]?)] = [(.service, service), (.remoteHost, remoteHost), (.tty, tty)]
    let fields = [(FieldTag.user, user), (.code, code)] + context.compactMap { tag, value in sendable(value).map { (tag, $0) } }
    var verify = SecretBytes(capacity: Requests.verifyCapacity)
    let thrown: WireError? = user.withUnsafeBufferPointer { user in
        code.withUnsafeBufferPointer { code in
            withOptionalBuffer(service) { service in
                withOptionalBuffer(remoteHost) { remoteHost in
                    withOptionalBuffer(tty) { tty in
                        do throws(WireError) {
                            try Requests.verify(user: user, code: code, service: service, remoteHost: remoteHost,
                                                tty: tty, into: &verify)
                            return nil
                        } catch {
                            return error
                        }
                    }
                }
            }
        }
    }
    if let thrown {
        if userFits && code.count <= CodeShape.maxLength { fail("verify failed within the module's limits: \(thrown)") }
        if thrown != .bufferTooSmall && thrown != .frameTooLarge { fail("verify threw \(thrown)") }
    } else {
        checkRequest(verify, expected: expectedFrame(.verify, fields))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))

    // 1. Decode, then re-encode: exact.
    do throws(WireError) {
        let message = try WireMessage.decode(payload: input)
        if message.encodedPayload() != input { fail("decode then encode is not the identity") }
        if message.version != input[0] || message.code != input[1] { fail("version or code") }
        for field in message.fields where field.value.count > WireProtocol.maxFieldLength { fail("field too long") }
        checkReaders(message)
        let frame = message.encodedFrame()
        if Array(frame[4...]) != input { fail("frame payload") }
        checkHeader(Array(frame[0..<4]), limit: WireProtocol.maxResponseLength)
    } catch {
        switch error {
        case .emptyFrame: if input.count >= 2 { fail("emptyFrame for \(input.count) bytes") }
        case .malformedField: if input.count < 2 { fail("malformedField for \(input.count) bytes") }
        default: fail("decode threw \(error)")
        }
    }

    // 2. Build, encode, then decode: the same message.
    let built = buildMessage(input)
    let frame = built.encodedFrame()
    do throws(WireError) {
        let length = try WireMessage.payloadLength(header: Array(frame[0..<4]), limit: WireProtocol.maxResponseLength)
        if length != frame.count - 4 { fail("payloadLength \(length) for \(frame.count - 4) bytes") }
        let decoded = try WireMessage.decode(payload: Array(frame[4...]))
        if decoded != built { fail("encode then decode differs") }
    } catch {
        fail("a built message did not decode: \(error)")
    }

    // 3. The length prefix, against the daemon's and the client's limits and one from the input.
    let header = Array(input.prefix(4))
    checkHeader(header, limit: WireProtocol.maxRequestLength)
    checkHeader(header, limit: WireProtocol.maxResponseLength)
    if input.count >= 8 { checkHeader(header, limit: bigEndian32(input[4..<8])) }

    // 4. The module's requests.
    checkModuleRequests(input)
    return 0
}
