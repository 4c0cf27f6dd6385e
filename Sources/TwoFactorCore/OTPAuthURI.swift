// otpauth:// URIs (Google Authenticator "Key Uri Format"), the contents of enrollment QR codes.

public enum OTPAuthURIError: Error, Equatable, CustomStringConvertible {
    case invalidScheme(String)
    case unsupportedType(String)
    case missingAccount
    case missingSecret
    case invalidSecret(Base32Error)
    case unsupportedAlgorithm(String)
    case invalidDigits(String)
    case invalidPeriod(String)
    case invalidCounter(String)
    case issuerMismatch(label: String, parameter: String)
    case duplicateParameter(String)
    case invalidPercentEncoding(String)
    case notUTF8
    case controlCharacter

    public var description: String {
        switch self {
        case .invalidScheme(let scheme):
            return "not an otpauth URI: it starts with \"\(scheme.prefix(32))\" instead of \"otpauth://\""
        case .unsupportedType(let type):
            return "unsupported OTP type \"\(type.prefix(32))\": only totp (time-based) and hotp (counter-based) are supported"
        case .missingAccount: return "missing account name: the URI needs a label like otpauth://totp/Issuer:alice"
        case .missingSecret: return "missing secret: the URI has no secret= parameter"
        case .invalidSecret(let error): return "invalid secret: \(error)"
        case .unsupportedAlgorithm(let name):
            return "unsupported algorithm \"\(name.prefix(32))\": use SHA1, SHA256 or SHA512"
        case .invalidDigits(let value):
            return "invalid digits \"\(value.prefix(32))\": codes have \(OTPParameters.digitRange.lowerBound) to \(OTPParameters.digitRange.upperBound) digits"
        case .invalidPeriod(let value):
            return "invalid period \"\(value.prefix(32))\": the period must be \(OTPParameters.periodRange.lowerBound) to \(OTPParameters.periodRange.upperBound) seconds"
        case .invalidCounter(let value):
            return "invalid counter \"\(value.prefix(32))\": an hotp URI needs counter=N, a whole number"
        case .issuerMismatch(let label, let parameter):
            return "issuer mismatch: the label says \"\(label.prefix(64))\" but the issuer parameter says \"\(parameter.prefix(64))\""
        case .duplicateParameter(let name): return "parameter \"\(name.prefix(32))\" appears more than once"
        case .invalidPercentEncoding(let text):
            return "invalid percent-encoding in \"\(text.prefix(64))\": '%' must be followed by two hex digits"
        case .notUTF8: return "the URI's percent-encoded text is not valid UTF-8"
        case .controlCharacter: return "the issuer or account name contains a control character"
        }
    }
}

public struct OTPAuthURI: Sendable, Equatable {
    public var issuer: String
    public var account: String
    public var secret: [UInt8]
    public var parameters: OTPParameters
    /// Set for a counter-based (HOTP) key: the URI is otpauth://hotp/...&counter=N, without period.
    public var hotpCounter: UInt64?

    public init(issuer: String, account: String, secret: [UInt8], parameters: OTPParameters, hotpCounter: UInt64? = nil) {
        self.issuer = issuer
        self.account = account
        self.secret = secret
        self.parameters = parameters
        self.hotpCounter = hotpCounter
    }

    /// otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=...&digits=...&period=...
    /// With an empty issuer the label is just the account and there is no issuer parameter.
    public var uriString: String {
        var label = Self.percentEncode(account)
        var query = "secret=" + Base32.encode(secret)
        if !issuer.isEmpty {
            label = Self.percentEncode(issuer) + ":" + label
            query += "&issuer=" + Self.percentEncode(issuer)
        }
        query += "&algorithm=" + parameters.algorithm.rawValue
        if let hotpCounter {
            query += "&digits=\(parameters.digits)&counter=\(hotpCounter)"
            return "otpauth://hotp/" + label + "?" + query
        }
        query += "&digits=\(parameters.digits)&period=\(parameters.period)"
        return "otpauth://totp/" + label + "?" + query
    }

    public init(parsing uri: String) throws(OTPAuthURIError) {
        let schemePrefix = "otpauth://"
        let uriBytes = Array(uri.utf8)
        let prefixBytes = Array(schemePrefix.utf8)
        guard uriBytes.count >= prefixBytes.count,
            Self.asciiLowercased(uriBytes[0..<prefixBytes.count]) == prefixBytes
        else {
            let end = uriBytes.firstIndex(of: UInt8(ascii: "/")) ?? min(uriBytes.count, 16)
            throw .invalidScheme(String(decoding: uriBytes[0..<end], as: UTF8.self))
        }
        var rest = uriBytes[prefixBytes.count...]

        // Type: up to the next '/' (or '?' / end when the label is missing).
        let typeEnd = rest.firstIndex(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") }) ?? rest.endIndex
        let type = Self.asciiLowercased(rest[rest.startIndex..<typeEnd])
        let isHOTP = type == Array("hotp".utf8)
        guard type == Array("totp".utf8) || isHOTP else {
            throw .unsupportedType(String(decoding: rest[rest.startIndex..<typeEnd], as: UTF8.self))
        }
        rest = rest[typeEnd...]
        guard rest.first == UInt8(ascii: "/") else { throw .missingAccount }
        rest = rest.dropFirst()

        let labelEnd = rest.firstIndex(of: UInt8(ascii: "?")) ?? rest.endIndex
        let rawLabel = rest[rest.startIndex..<labelEnd]
        let rawQuery = labelEnd < rest.endIndex ? rest[(labelEnd + 1)...] : rest[rest.endIndex...]

        // The separator is a literal ':' (what we write; a ':' inside the issuer is then %3A).
        // An encoded "%3A" separator is accepted only next to an issuer parameter, which must then
        // agree: without one, "a%3Ab" is an account that contains a colon.
        var labelIssuer: String? = nil
        var account: String
        let hasIssuerParameter = rawQuery.split(separator: UInt8(ascii: "&")).contains { pair in
            Self.asciiLowercased(pair.prefix(7)) == Array("issuer=".utf8)
        }
        if let colon = rawLabel.firstIndex(of: UInt8(ascii: ":")) {
            labelIssuer = try Self.percentDecode(rawLabel[rawLabel.startIndex..<colon])
            account = try Self.percentDecode(rawLabel[(colon + 1)...])
        } else {
            let label = try Self.percentDecode(rawLabel)
            if hasIssuerParameter, let colon = label.firstIndex(of: ":") {
                labelIssuer = String(label[label.startIndex..<colon])
                account = String(label[label.index(after: colon)...])
            } else {
                account = label
            }
        }
        // The format allows spaces after the separator ("Example: alice"). They are never part of
        // the account, wherever the issuer is given: the URI we write puts it in the label.
        account = String(account.drop(while: { $0 == " " }))
        guard !account.isEmpty else { throw .missingAccount }

        var values: [String: String] = [:]
        for pair in rawQuery.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let equals = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            let name = String(decoding: Self.asciiLowercased(pair[pair.startIndex..<equals]), as: UTF8.self)
            let value = try Self.percentDecode(equals < pair.endIndex ? pair[(equals + 1)...] : pair[pair.endIndex...])
            // A second value could make two readers of the same URI see different secrets.
            guard values[name] == nil else { throw .duplicateParameter(name) }
            values[name] = value
        }

        guard let secretText = values["secret"] else { throw .missingSecret }
        let secret: [UInt8]
        do {
            secret = try Base32.decode(secretText)
        } catch {
            throw .invalidSecret(error)
        }

        var algorithm = OTPAlgorithm.sha1
        if let name = values["algorithm"] {
            guard let parsed = OTPAlgorithm(rawValue: name.uppercased()) else { throw .unsupportedAlgorithm(name) }
            algorithm = parsed
        }
        var digits = OTPParameters.standard.digits
        if let text = values["digits"] {
            guard let parsed = Self.smallDecimal(text), OTPParameters.digitRange.contains(parsed) else {
                throw .invalidDigits(text)
            }
            digits = parsed
        }
        var period = OTPParameters.standard.period
        if let text = values["period"] {
            guard let parsed = Self.smallDecimal(text), OTPParameters.periodRange.contains(parsed) else {
                throw .invalidPeriod(text)
            }
            // RFC 4226 has no time step: an hotp URI's period is checked but not kept, as the
            // URI written for an HOTP key has none (parse, write, parse must agree).
            if !isHOTP { period = parsed }
        }

        let issuer: String
        switch (labelIssuer, values["issuer"]) {
        case (let label?, let parameter?):
            guard label == parameter else { throw .issuerMismatch(label: label, parameter: parameter) }
            issuer = label
        case (let label?, nil): issuer = label
        case (nil, let parameter?): issuer = parameter
        case (nil, nil): issuer = ""
        }
        guard !Self.hasControlCharacter(issuer), !Self.hasControlCharacter(account) else {
            throw .controlCharacter
        }

        let parameters: OTPParameters
        do {
            parameters = try OTPParameters(algorithm: algorithm, digits: digits, period: period)
        } catch {
            // Unreachable: both values were range-checked above.
            switch error {
            case .invalidDigits(let value): throw .invalidDigits(String(value))
            case .invalidPeriod(let value): throw .invalidPeriod(String(value))
            }
        }
        var hotpCounter: UInt64? = nil
        if isHOTP {
            guard let text = values["counter"], let counter = UInt64(text) else { throw .invalidCounter(values["counter"] ?? "") }
            hotpCounter = counter
        }
        self.init(issuer: issuer, account: account, secret: secret, parameters: parameters, hotpCounter: hotpCounter)
    }

    // MARK: - Helpers

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Percent-encodes every UTF-8 byte outside RFC 3986 "unreserved" (space becomes %20).
    public static func percentEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if isUnreserved(byte) {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0x0f)])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes %XX escapes ('+' stays '+', as RFC 3986 says); the result must be valid UTF-8.
    static func percentDecode(_ bytes: ArraySlice<UInt8>) throws(OTPAuthURIError) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
                else {
                    throw .invalidPercentEncoding(String(decoding: bytes, as: UTF8.self))
                }
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(byte)
                index += 1
            }
        }
        guard let text = String(validating: output, as: UTF8.self) else { throw .notUTF8 }
        return text
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    static func asciiLowercased(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        bytes.map { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) ? $0 + 32 : $0 }
    }

    /// Parses 1 to 4 ASCII digits; anything else (signs, spaces, huge numbers) is nil.
    static func smallDecimal(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        guard (1...4).contains(bytes.count) else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    static func hasControlCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}
