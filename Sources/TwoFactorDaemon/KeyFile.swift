// The master key file and the keys derived from it. Secrets in the store are sealed with one derived
// key, recovery codes hashed with another, so neither use can be turned against the other.
import Foundation
import TwoFactorCore

public struct KeyFileError: Error, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

public struct DerivedKeys: Sendable {
    /// AES-256-GCM key for TOTP secrets at rest.
    let secretEncryption: [UInt8]
    /// HMAC-SHA-256 key for recovery-code hashes.
    let recoveryHashing: [UInt8]

    public init(master: [UInt8]) {
        secretEncryption = HMAC.sha256(Array("twofactor secret encryption v1".utf8), key: master)
        recoveryHashing = HMAC.sha256(Array("twofactor recovery code hashing v1".utf8), key: master)
    }

    /// Binds a sealed secret to its account, so a ciphertext copied to another row does not open.
    static func secretAssociatedData(account: String) -> [UInt8] {
        Array("twofactor secret v1\0".utf8) + Array(account.utf8)
    }

    func sealSecret(_ secret: [UInt8], account: String) throws -> [UInt8] {
        try AESGCM.seal(secret, key: secretEncryption, associatedData: Self.secretAssociatedData(account: account))
    }

    func openSecret(_ sealed: [UInt8], account: String) throws -> [UInt8] {
        try AESGCM.open(sealed, key: secretEncryption, associatedData: Self.secretAssociatedData(account: account))
    }

    func hashRecoveryCode(normalized: String) -> [UInt8] {
        RecoveryCodes.hash(normalized: normalized, key: recoveryHashing)
    }
}

public enum KeyFile {
    public static let length = 32

    /// Reads the master key, creating it (32 random bytes, mode 0600) when the file does not exist.
    /// Refuses a key that group or others can read, that someone other than root or the daemon's
    /// user owns, or that is not exactly 32 bytes.
    public static func loadOrCreate(path: String) throws(KeyFileError) -> [UInt8] {
        if let key = try create(path: path) { return key }
        // create() puts only whole keys in place, so a short file is never one still being written.
        if let key = try read(path: path) { return key }
        throw KeyFileError(path: path, message: "is shorter than \(length) bytes")
    }

    /// nil when the file already exists. The key is written and synced under a temporary name and
    /// only then linked into place, so `path` never holds a partial key: a crash or power loss
    /// while creating it leaves at most a stray temporary file, not a short key that stops every
    /// later start.
    static func create(path: String) throws(KeyFileError) -> [UInt8]? {
        var info = stat()
        if lstat(path, &info) == 0 { return nil }
        guard errno == ENOENT else {
            throw KeyFileError(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        let temporary = path + ".new-" + SecureRandom.bytes(8).map { String(format: "%02x", $0) }.joined()
        // O_EXCL: never follow or reuse something planted there; the mode is set with fchmod too,
        // so a permissive umask cannot widen it.
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw KeyFileError(path: path, message: "cannot create: \(String(cString: strerror(errno)))")
        }
        var key = SecureRandom.bytes(length)
        let ok = fchmod(fd, 0o600) == 0 && writeAll(fd, key) && fsync(fd) == 0
        let failure = errno
        close(fd)
        guard ok else {
            ConstantTime.zero(&key)
            unlink(temporary)
            throw KeyFileError(path: path, message: "cannot write: \(String(cString: strerror(failure)))")
        }
        // link() never replaces anything: EEXIST when another daemon (or anything planted) got there first.
        let linked = link(temporary, path) == 0
        let linkFailure = errno
        unlink(temporary)
        guard linked else {
            ConstantTime.zero(&key)
            if linkFailure == EEXIST { return nil }
            throw KeyFileError(path: path, message: "cannot create: \(String(cString: strerror(linkFailure)))")
        }
        syncDirectory(of: path)
        return key
    }

    /// nil when the file is (still) shorter than a key.
    static func read(path: String) throws(KeyFileError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { throw KeyFileError(path: path, message: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw KeyFileError(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw KeyFileError(path: path, message: "is not a regular file") }
        if let problem = TrustedFile.problem(info, forbidden: 0o077, access: "accessible", remedy: "600") {
            throw KeyFileError(path: path, message: problem)
        }
        if info.st_size < length { return nil }
        guard info.st_size == length else {
            throw KeyFileError(path: path, message: "must hold exactly \(length) bytes, holds \(info.st_size)")
        }
        var key = [UInt8](repeating: 0, count: length)
        let count = key.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, length) }
        guard count == length else { throw KeyFileError(path: path, message: "short read") }
        return key
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
