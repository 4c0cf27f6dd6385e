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
    /// AES-256-GCM key that seals TOTP secrets at rest.
    let secretEncryption: [UInt8]
    /// During a key rotation: a second AES-256-GCM key that only opens (see KeyRing).
    let otherSecretEncryption: [UInt8]?
    /// HMAC-SHA-256 key for recovery-code hashes.
    let recoveryHashing: [UInt8]

    /// One master key for everything: the key file as the daemon creates it.
    public init(master: [UInt8]) {
        self.init(ring: KeyRing(recovery: master, sealing: master, openOnly: nil))
    }

    public init(ring: KeyRing) {
        secretEncryption = Self.secretKey(master: ring.sealing)
        otherSecretEncryption = ring.openOnly.map(Self.secretKey(master:))
        recoveryHashing = HMAC.sha256(Array("twofactor recovery code hashing v1".utf8), key: ring.recovery)
    }

    static func secretKey(master: [UInt8]) -> [UInt8] {
        HMAC.sha256(Array("twofactor secret encryption v1".utf8), key: master)
    }

    /// Binds a sealed secret to its account, so a ciphertext copied to another row does not open.
    static func secretAssociatedData(account: String) -> [UInt8] {
        Array("twofactor secret v1\0".utf8) + Array(account.utf8)
    }

    func sealSecret(_ secret: [UInt8], account: String) throws -> [UInt8] {
        try AESGCM.seal(secret, key: secretEncryption, associatedData: Self.secretAssociatedData(account: account))
    }

    /// Opens with the sealing key, else (during a rotation) with the other key of the ring.
    func openSecret(_ sealed: [UInt8], account: String) throws -> [UInt8] {
        let associatedData = Self.secretAssociatedData(account: account)
        do {
            return try AESGCM.open(sealed, key: secretEncryption, associatedData: associatedData)
        } catch {
            guard let other = otherSecretEncryption else { throw error }
            return try AESGCM.open(sealed, key: other, associatedData: associatedData)
        }
    }

    /// Whether `sealed` opens under the sealing key itself (what rotate-key leaves every secret as).
    func isSealedUnderSealingKey(_ sealed: [UInt8], account: String) -> Bool {
        guard var secret = try? AESGCM.open(sealed, key: secretEncryption,
                                            associatedData: Self.secretAssociatedData(account: account)) else { return false }
        ConstantTime.zero(&secret)
        return true
    }

    func hashRecoveryCode(normalized: String) -> [UInt8] {
        RecoveryCodes.hash(normalized: normalized, key: recoveryHashing)
    }
}

/// The master keys a key file holds. The daemon creates a file of one 32-byte key, which derives
/// everything. `twofactord rotate-key` writes 64 or 96 bytes: the recovery master (the first key
/// ever, kept because recovery codes are stored only as keyed hashes, which cannot be re-keyed
/// without the codes), the sealing master, and during a rotation a third key that only opens, so
/// that every node opens secrets sealed under the old or the new key while the file travels.
public struct KeyRing: Sendable, Equatable {
    public var recovery: [UInt8]
    public var sealing: [UInt8]
    public var openOnly: [UInt8]?

    public init(recovery: [UInt8], sealing: [UInt8], openOnly: [UInt8]?) {
        self.recovery = recovery
        self.sealing = sealing
        self.openOnly = openOnly
    }

    /// The file's bytes: 32 (one key), 64 (recovery, sealing) or 96 (… and the open-only key).
    init?(fileBytes bytes: [UInt8]) {
        let n = KeyFile.length
        switch bytes.count {
        case n: self.init(recovery: bytes, sealing: bytes, openOnly: nil)
        case 2 * n: self.init(recovery: Array(bytes[0..<n]), sealing: Array(bytes[n...]), openOnly: nil)
        case 3 * n:
            self.init(recovery: Array(bytes[0..<n]), sealing: Array(bytes[n..<2 * n]), openOnly: Array(bytes[(2 * n)...]))
        default: return nil
        }
    }

    var fileBytes: [UInt8] {
        if openOnly == nil && recovery == sealing { return sealing }
        return recovery + sealing + (openOnly ?? [])
    }
}

/// The daemon's keys, re-read when the key file changes: on a secret that does not open and
/// before sealing a new one. So a key file distributed during a rotation takes effect without a
/// restart (README.md, "Many nodes").
public final class KeySource: @unchecked Sendable {
    private let path: String?
    private let lock = NSLock()
    private var keys: DerivedKeys
    private var signature: KeyFile.Signature?

    /// Fixed keys, never re-read (unit tests).
    public init(fixed keys: DerivedKeys) {
        path = nil
        self.keys = keys
    }

    /// Reads `path`, creating a key there if there is none (KeyFile.loadOrCreate).
    public init(path: String) throws(KeyFileError) {
        self.path = path
        let ring = try KeyFile.loadOrCreateRing(path: path)
        keys = DerivedKeys(ring: ring)
        signature = KeyFile.signature(path: path)
    }

    public var current: DerivedKeys {
        lock.lock(); defer { lock.unlock() }
        return keys
    }

    /// Re-reads the key file if it changed since it was read; true when the keys changed. A file
    /// that cannot be read (one being copied in) keeps the keys in use.
    @discardableResult
    public func refresh() -> Bool {
        guard let path else { return false }
        lock.lock(); defer { lock.unlock() }
        let now = KeyFile.signature(path: path)
        guard now != signature, let ring = try? KeyFile.readRing(path: path) else { return false }
        signature = now
        keys = DerivedKeys(ring: ring)
        return true
    }
}

public enum KeyFile {
    public static let length = 32

    /// Reads the master key, creating it (32 random bytes, mode 0600) when the file does not exist.
    /// Refuses a key that group or others can read, that someone other than root or the daemon's
    /// user owns, or that is not 32 bytes (or a key ring of 64 or 96, see KeyRing).
    public static func loadOrCreate(path: String) throws(KeyFileError) -> [UInt8] {
        if let key = try create(path: path) { return key }
        // create() puts only whole keys in place, so a short file is never one still being written.
        if let key = try read(path: path) { return key }
        throw KeyFileError(path: path, message: "is shorter than \(length) bytes")
    }

    /// loadOrCreate for a file that may hold a key ring (KeyRing).
    public static func loadOrCreateRing(path: String) throws(KeyFileError) -> KeyRing {
        let bytes = try loadOrCreate(path: path)
        guard let ring = KeyRing(fileBytes: bytes) else {
            throw KeyFileError(path: path, message: "must hold 32, 64 or 96 bytes, holds \(bytes.count)")
        }
        return ring
    }

    /// An existing key file's ring (never creates one).
    public static func readRing(path: String) throws(KeyFileError) -> KeyRing {
        guard let bytes = try read(path: path), let ring = KeyRing(fileBytes: bytes) else {
            throw KeyFileError(path: path, message: "must hold 32, 64 or 96 bytes")
        }
        return ring
    }

    /// What tells a replaced or rewritten key file from the one read before.
    struct Signature: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, modified: Int, modifiedNanos: Int, changed: Int, changedNanos: Int
    }

    static func signature(path: String) -> Signature? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Signature(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                         modified: info.st_mtim.tv_sec, modifiedNanos: info.st_mtim.tv_nsec,
                         changed: info.st_ctim.tv_sec, changedNanos: info.st_ctim.tv_nsec)
    }

    /// Puts `ring` in place of the key file at once (a new file renamed over it, synced), with
    /// the old file's owner and group, mode 0600: a reader sees the old ring or the new one.
    public static func replace(path: String, with ring: KeyRing) throws(KeyFileError) {
        var old = stat()
        guard stat(path, &old) == 0 else {
            throw KeyFileError(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        let temporary = path + ".new-" + SecureRandom.bytes(8).map { String(format: "%02x", $0) }.joined()
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 { throw KeyFileError(path: path, message: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var bytes = ring.fileBytes
        defer { ConstantTime.zero(&bytes) }
        let ok = fchmod(fd, 0o600) == 0 && fchown(fd, old.st_uid, old.st_gid) == 0 && writeAll(fd, bytes) && fsync(fd) == 0
        let failure = errno
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            let reason = ok ? errno : failure
            unlink(temporary)
            throw KeyFileError(path: path, message: "cannot replace: \(String(cString: strerror(reason)))")
        }
        syncDirectory(of: path)
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
        // One key, or a ring of two or three (KeyRing).
        guard [1, 2, 3].map({ $0 * length }).contains(Int(info.st_size)) else {
            throw KeyFileError(path: path, message: "must hold \(length), \(2 * length) or \(3 * length) bytes, holds \(info.st_size)")
        }
        let size = Int(info.st_size)
        var key = [UInt8](repeating: 0, count: size)
        let count = key.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, size) }
        guard count == size else { throw KeyFileError(path: path, message: "short read") }
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
