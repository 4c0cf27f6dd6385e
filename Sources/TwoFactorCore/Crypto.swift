// Crypto primitives over OpenSSL libcrypto: HMAC, AES-256-GCM, the CSPRNG, constant-time helpers.
// Nothing here implements a hash or cipher by hand.
import CLibCrypto

public enum CryptoError: Error, Equatable, CustomStringConvertible {
    case invalidKeyLength
    case authenticationFailed
    case truncated
    case backend(String)

    public var description: String {
        switch self {
        case .invalidKeyLength: return "invalid key length: AES-256-GCM needs a 32-byte key"
        case .authenticationFailed:
            return "authentication failed: the data was altered, or the key or associated data is wrong"
        case .truncated: return "sealed data too short: it must hold a 12-byte nonce and a 16-byte tag"
        case .backend(let what): return "OpenSSL error: \(what)"
        }
    }
}

public enum ConstantTime {
    /// Compares without an early exit on content (CRYPTO_memcmp). Lengths are not secret: a length
    /// mismatch returns false at once.
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                CRYPTO_memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0
            }
        }
    }

    /// Compares two packed values with one XOR: no data-dependent branch until the final result.
    @inline(__always)
    static func equals(_ a: UInt64, _ b: UInt64) -> Bool {
        let difference = a ^ b
        // Folds any set bit into bit 0 without branching on which bit it was.
        let nonZero = (difference | (0 &- difference)) >> 63
        return nonZero == 0
    }

    /// Overwrites with zeros through OPENSSL_cleanse, which the optimiser cannot drop.
    public static func zero(_ bytes: inout [UInt8]) {
        let count = bytes.count
        guard count > 0 else { return }
        bytes.withUnsafeMutableBytes { raw in
            OPENSSL_cleanse(raw.baseAddress, count)
        }
    }
}

public enum SecureRandom {
    /// Bytes from OpenSSL's CSPRNG. Stops the process if the CSPRNG fails: weak secrets are worse
    /// than no secrets.
    public static func bytes(_ count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        var result = [UInt8](repeating: 0, count: count)
        fill(&result)
        return result
    }

    static func fill(_ buffer: inout [UInt8]) {
        guard !buffer.isEmpty else { return }
        let ok = buffer.withUnsafeMutableBufferPointer { pointer in
            RAND_bytes(pointer.baseAddress, Int32(pointer.count))
        }
        if ok != 1 { fatalError("OpenSSL RAND_bytes failed: refusing to continue without a CSPRNG") }
    }

    /// A uniform value in 0..<upperBound, by rejection sampling (no modulo bias).
    /// Returns 0 when upperBound <= 1 (the only value possible, or no valid range).
    public static func uniform(_ upperBound: Int) -> Int {
        guard upperBound > 1 else { return 0 }
        let bound = UInt64(upperBound)
        // Largest multiple of `bound` that fits: values at or above it would bias the result.
        let limit = UInt64.max - (UInt64.max % bound)
        var buffer = [UInt8](repeating: 0, count: 8)
        while true {
            fill(&buffer)
            var value: UInt64 = 0
            for byte in buffer { value = (value << 8) | UInt64(byte) }
            if value < limit { return Int(value % bound) }
        }
    }

    /// A new TOTP secret: 20 bytes (160 bits), as RFC 4226 recommends.
    public static func newSecret() -> [UInt8] { bytes(20) }
}

extension OTPAlgorithm {
    var messageDigest: OpaquePointer {
        let md: OpaquePointer?
        switch self {
        case .sha1: md = EVP_sha1()
        case .sha256: md = EVP_sha256()
        case .sha512: md = EVP_sha512()
        }
        guard let md else { fatalError("OpenSSL has no digest \(rawValue)") }
        return md
    }

    /// Digest size in bytes.
    var digestLength: Int {
        switch self {
        case .sha1: return 20
        case .sha256: return 32
        case .sha512: return 64
        }
    }
}

public enum HMAC {
    public static func authenticate(_ message: [UInt8], key: [UInt8], algorithm: OTPAlgorithm) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: algorithm.digestLength)
        message.withUnsafeBufferPointer { messagePointer in
            output.withUnsafeMutableBufferPointer { out in
                let length = compute(
                    key: key, message: UnsafeRawBufferPointer(messagePointer), algorithm: algorithm,
                    into: out.baseAddress!)
                precondition(length == algorithm.digestLength)
            }
        }
        return output
    }

    public static func sha256(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        authenticate(message, key: key, algorithm: .sha256)
    }

    /// One-shot HMAC into a caller-provided buffer of at least 64 bytes; returns the digest length.
    /// Does not allocate (the OTP hot path uses it with stack memory).
    static func compute(
        key: [UInt8], message: UnsafeRawBufferPointer, algorithm: OTPAlgorithm,
        into output: UnsafeMutablePointer<UInt8>
    ) -> Int {
        var length: UInt32 = 0
        // OpenSSL wants non-NULL pointers even for empty inputs.
        var placeholder: UInt8 = 0
        let result: UnsafeMutablePointer<UInt8>? = withUnsafeMutablePointer(to: &placeholder) { emptyPointer in
            key.withUnsafeBufferPointer { keyPointer in
                let messageBase = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
                return CLibCrypto.HMAC(
                    algorithm.messageDigest,
                    keyPointer.baseAddress ?? UnsafePointer(emptyPointer), Int32(keyPointer.count),
                    messageBase ?? UnsafePointer(emptyPointer), message.count,
                    output, &length)
            }
        }
        // HMAC only fails when OpenSSL itself is broken (no memory, no digest); a made-up digest
        // could let a wrong code through, so stop instead.
        if result == nil { fatalError("OpenSSL HMAC failed") }
        return Int(length)
    }
}

public enum AESGCM {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    /// Returns nonce(12) || ciphertext || tag(16), with a fresh random nonce.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], associatedData: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard key.count == keyLength else { throw .invalidKeyLength }
        guard let context = EVP_CIPHER_CTX_new() else { throw .backend("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }

        let nonce = SecureRandom.bytes(nonceLength)
        var output = [UInt8](repeating: 0, count: nonceLength + plaintext.count + tagLength)
        output.replaceSubrange(0..<nonceLength, with: nonce)

        guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonceLength), nil) == 1
        else { throw .backend("EVP_EncryptInit_ex (AES-256-GCM)") }
        let keyed = key.withUnsafeBufferPointer { k in
            nonce.withUnsafeBufferPointer { n in EVP_EncryptInit_ex(context, nil, nil, k.baseAddress, n.baseAddress) }
        }
        guard keyed == 1 else { throw .backend("EVP_EncryptInit_ex (key)") }

        var outLength: Int32 = 0
        if !associatedData.isEmpty {
            let ok = associatedData.withUnsafeBufferPointer { aad in
                EVP_EncryptUpdate(context, nil, &outLength, aad.baseAddress, Int32(aad.count))
            }
            guard ok == 1 else { throw .backend("EVP_EncryptUpdate (associated data)") }
        }
        let ok = output.withUnsafeMutableBufferPointer { out -> Bool in
            let ciphertext = out.baseAddress! + nonceLength
            var written: Int32 = 0
            if !plaintext.isEmpty {
                let updated = plaintext.withUnsafeBufferPointer { p in
                    EVP_EncryptUpdate(context, ciphertext, &written, p.baseAddress, Int32(p.count))
                }
                guard updated == 1, Int(written) == plaintext.count else { return false }
            }
            let finished = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { scratch in
                var finalLength: Int32 = 0
                return EVP_EncryptFinal_ex(context, scratch.baseAddress!, &finalLength) == 1 && finalLength == 0
            }
            guard finished else { return false }
            let tag = ciphertext + plaintext.count
            return EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagLength), tag) == 1
        }
        guard ok else {
            ConstantTime.zero(&output)
            throw .backend("AES-256-GCM encryption")
        }
        return output
    }

    /// Opens a box made by `seal`. Any change to the box, a wrong key or wrong associated data
    /// gives `.authenticationFailed`, and no plaintext.
    public static func open(_ sealed: [UInt8], key: [UInt8], associatedData: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard key.count == keyLength else { throw .invalidKeyLength }
        guard sealed.count >= nonceLength + tagLength else { throw .truncated }
        guard let context = EVP_CIPHER_CTX_new() else { throw .backend("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }

        let ciphertextLength = sealed.count - nonceLength - tagLength
        guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonceLength), nil) == 1
        else { throw .backend("EVP_DecryptInit_ex (AES-256-GCM)") }

        var plaintext = [UInt8](repeating: 0, count: ciphertextLength)
        var authenticated = false
        let setUp: Bool = sealed.withUnsafeBufferPointer { box in
            let base = box.baseAddress!
            let keyed = key.withUnsafeBufferPointer { k in EVP_DecryptInit_ex(context, nil, nil, k.baseAddress, base) }
            guard keyed == 1 else { return false }
            var outLength: Int32 = 0
            if !associatedData.isEmpty {
                let ok = associatedData.withUnsafeBufferPointer { aad in
                    EVP_DecryptUpdate(context, nil, &outLength, aad.baseAddress, Int32(aad.count))
                }
                guard ok == 1 else { return false }
            }
            return plaintext.withUnsafeMutableBufferPointer { out -> Bool in
                var written: Int32 = 0
                if ciphertextLength > 0 {
                    guard EVP_DecryptUpdate(context, out.baseAddress, &written, base + nonceLength, Int32(ciphertextLength)) == 1,
                        Int(written) == ciphertextLength
                    else { return false }
                }
                // EVP_CIPHER_CTX_ctrl takes a non-const pointer but only reads the expected tag.
                let tag = UnsafeMutableRawPointer(mutating: base + nonceLength + ciphertextLength)
                guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagLength), tag) == 1 else { return false }
                // The tag is checked here; any mismatch fails. GCM writes no bytes at the end, but
                // OpenSSL wants a valid pointer, so give it a scratch block.
                authenticated = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { scratch in
                    var finalLength: Int32 = 0
                    return EVP_DecryptFinal_ex(context, scratch.baseAddress!, &finalLength) == 1 && finalLength == 0
                }
                return true
            }
        }
        guard setUp else {
            ConstantTime.zero(&plaintext)
            throw .backend("AES-256-GCM decryption")
        }
        guard authenticated else {
            ConstantTime.zero(&plaintext)
            throw .authenticationFailed
        }
        return plaintext
    }
}
