// libFuzzer target "otpauth": OTPAuthURI(parsing:) and uriString (Sources/TwoFactorCore/OTPAuthURI.swift).
//
// Properties checked on every input:
//  - parsing the input as text either gives a URI or throws an OTPAuthURIError (whose
//    description never traps).
//  - on success: the secret is non-empty, digits and period are in OTPParameters' ranges, the
//    issuer and account have no control characters and the account is not empty; and the URI
//    we would write for it (uriString) parses back to an equal value (round trip).
//  - percentEncode output is only unreserved characters and %XX escapes.
import TwoFactorCore

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("otpauth property violated: \(message)")
}

func parsed(_ text: String) -> Result<OTPAuthURI, OTPAuthURIError> {
    do throws(OTPAuthURIError) { return .success(try OTPAuthURI(parsing: text)) } catch { return .failure(error) }
}

func hasControl(_ text: String) -> Bool {
    text.unicodeScalars.contains { $0.properties.generalCategory == .control }
}

func isUpperHex(_ byte: UInt8) -> Bool { (48...57).contains(byte) || (65...70).contains(byte) }

func checkPercentEncoding(_ text: String) {
    let encoded = Array(OTPAuthURI.percentEncode(text).utf8)
    var index = 0
    while index < encoded.count {
        let byte = encoded[index]
        if byte == UInt8(ascii: "%") {
            guard index + 2 < encoded.count, isUpperHex(encoded[index + 1]), isUpperHex(encoded[index + 2]) else {
                fail("bad % escape in percentEncode")
            }
            index += 3
            continue
        }
        let unreserved = (65...90).contains(byte) || (97...122).contains(byte) || (48...57).contains(byte)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "~")
        if !unreserved { fail("percentEncode left byte \(byte)") }
        index += 1
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    switch parsed(text) {
    case .success(let uri):
        if uri.secret.isEmpty { fail("empty secret") }
        if uri.account.isEmpty { fail("empty account") }
        if hasControl(uri.issuer) || hasControl(uri.account) { fail("control character in issuer or account") }
        if !OTPParameters.digitRange.contains(uri.parameters.digits) { fail("digits \(uri.parameters.digits)") }
        if !OTPParameters.periodRange.contains(uri.parameters.period) { fail("period \(uri.parameters.period)") }
        let written = uri.uriString
        switch parsed(written) {
        case .success(let again):
            if again != uri { fail("round trip differs: \(uri) -> \(written) -> \(again)") }
        case .failure(let error):
            fail("our own URI \(written) does not parse: \(error)")
        }
        checkPercentEncoding(uri.account)
        checkPercentEncoding(uri.issuer)
    case .failure(let error):
        _ = error.description
    }
    return 0
}
