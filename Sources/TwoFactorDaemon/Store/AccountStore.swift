import Dispatch
import TwoFactorCore

// What the verification logic needs from storage, and nothing about how it is stored. The SQLite
// store (one host) and the PostgreSQL store (many hosts sharing one database: row locks in one
// transaction, docs/POSTGRESQL.md) implement it, with the same guarantees:
//  - `write` runs a unit of work in a transaction that is durably committed before its completion
//    is called; units queued together may share one transaction (group commit), each in its own
//    savepoint, in submission order, so each sees the writes of the ones before it;
//  - if the commit fails, every unit of that transaction completes with a StoreError (nothing
//    it did may be reported as done);
//  - units are serialised: two units never interleave, so a read-check-write inside one unit is
//    atomic (this is what makes a code single-use under concurrency). For PostgreSQL this holds
//    per account across daemons: a writing unit's account(named:) locks the row until COMMIT.

/// A confirmed or pending TOTP or HOTP enrollment. The secret is sealed (encrypted) by the caller.
public struct EnrollmentRecord: Sendable, Equatable {
    public var sealedSecret: [UInt8]
    public var algorithm: String
    public var digits: Int
    /// Seconds per step (TOTP); kept but unused for HOTP.
    public var period: Int
    public var createdAt: Int64
    /// OTPKind's raw value: "totp" or "hotp" (schema v2; older rows are "totp").
    public var kind: String

    public init(sealedSecret: [UInt8], algorithm: String, digits: Int, period: Int, createdAt: Int64,
                kind: String = OTPKind.totp.rawValue) {
        self.sealedSecret = sealedSecret
        self.algorithm = algorithm
        self.digits = digits
        self.period = period
        self.createdAt = createdAt
        self.kind = kind
    }
}

public struct AccountRecord: Sendable, Equatable {
    public var name: String
    public var enrollment: EnrollmentRecord?
    public var pending: EnrollmentRecord?
    /// Highest TOTP step accepted so far; a code for this step or an earlier one is a replay.
    public var lastStep: Int64?
    public var lastUsedAt: Int64?
    /// Consecutive failed attempts since the last success, unlock or expired lockout.
    public var failures: Int
    public var lockedUntil: Int64?
    /// Lockouts since the last success or unlock; each doubles the next lockout.
    public var lockouts: Int
    /// Learned clock drift of the account's authenticator, in steps (RFC 6238 section 6).
    public var driftSteps: Int64
    /// HOTP: the next counter expected; codes for lower counters are used (schema v2).
    public var hotpCounter: Int64?
    /// HOTP: a counter beyond the look-ahead window matched by the last attempt; the next code
    /// must be for the counter after it to resynchronise (RFC 4226 section 7.4) (schema v2).
    public var hotpResyncCounter: Int64?
    /// Steps accepted either side of now (TOTP) or counters looked ahead (HOTP) for this account
    /// instead of the configured ones: set by an import that carried its own window (schema v2).
    public var window: Int?
    /// Logins without 2FA under enforcement (enforce_grace_logins), counted once they succeeded.
    public var graceLoginsUsed: Int

    public init(name: String) {
        self.name = name
        failures = 0
        lockouts = 0
        driftSteps = 0
        graceLoginsUsed = 0
    }
}

/// What the login policy asks of an account at every `check`: a narrow read, since reading the
/// whole row (23 columns, a sealed secret, five strings) for these two facts was over a quarter
/// of the daemon's work per check (docs/PERFORMANCE-NOTES.md, fifth round). An unknown account
/// is not enrolled and has used no grace logins.
public struct LoginState: Sendable, Equatable {
    public var enrolled = false
    public var graceLoginsUsed = 0

    public init(enrolled: Bool = false, graceLoginsUsed: Int = 0) {
        self.enrolled = enrolled
        self.graceLoginsUsed = graceLoginsUsed
    }
}

/// One recovery code hash, never the code itself.
public struct RecoveryCodeRecord: Sendable, Equatable {
    public var hash: [UInt8]
    public var usedAt: Int64?
}

/// The operations a unit of work may perform. Only valid inside the unit that received it.
public protocol AccountTransaction {
    func account(named name: String) throws -> AccountRecord?
    /// The account's LoginState: `account(named:)`'s enrollment and grace logins, and no more.
    func loginState(of name: String) throws -> LoginState
    func allAccounts() throws -> [AccountRecord]
    /// Up to `limit` accounts in name order (bytewise, as SQLite's BINARY collation), starting
    /// after `after` or from the first when nil: one page of admin list.
    func accounts(after: String?, limit: Int) throws -> [AccountRecord]
    /// Inserts or updates the account row (its recovery codes are untouched).
    func save(_ account: AccountRecord) throws
    /// Deletes the account and its recovery codes.
    func deleteAccount(named name: String) throws
    func recoveryCodes(of name: String) throws -> [RecoveryCodeRecord]
    func recoveryCodesLeft(of name: String) throws -> Int
    /// Marks an unused code as used; false when it is unknown or already used.
    func markRecoveryCodeUsed(of name: String, hash: [UInt8], at time: Int64) throws -> Bool
    /// Replaces all of the account's recovery codes with new unused ones.
    func replaceRecoveryCodes(of name: String, hashes: [[UInt8]]) throws
}

public struct StoreError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public protocol AccountStore: AnyObject, Sendable {
    /// Runs `unit` on the single writer (see the guarantees above) and calls `completion` after the
    /// commit with the unit's result, or with a StoreError if the unit threw or the commit failed.
    /// Either may run on the calling thread before `write` returns (SQLite commits a lone unit
    /// there), so the caller must not hold a lock that the unit or the completion takes.
    func write<T: Sendable>(_ unit: @escaping @Sendable (any AccountTransaction) throws -> T,
                            completion: @escaping @Sendable (Result<T, StoreError>) -> Void)
    /// Runs a read-only `body` on a consistent snapshot, concurrently with the writer.
    func read<T: Sendable>(_ body: @escaping @Sendable (any AccountTransaction) throws -> T,
                           completion: @escaping @Sendable (Result<T, StoreError>) -> Void)
    /// Runs a short read-only `body` at once, on the calling thread, when the store can do so
    /// without waiting for anything (a lock, another unit, the network); nil when it cannot, and
    /// the caller then uses `read`. It sees every unit whose completion has run. For `check`,
    /// one lookup by name: handing it to another thread and back costs more than the lookup.
    func readNow<T>(_ body: (any AccountTransaction) throws -> T) -> T?
    /// Finishes queued units, then closes. Later calls complete with a StoreError.
    func close()
}

extension AccountStore {
    /// A store that cannot read without waiting (over a network, say) always answers nil.
    public func readNow<T>(_ body: (any AccountTransaction) throws -> T) -> T? { nil }
}

/// Blocking forms of the store's calls, for threads that may block: the maintenance commands, and
/// `verify` on its connection's own thread, which then writes the audit line and the answer there
/// rather than on the store's writer that every verify shares. Never on the store's own threads.
extension AccountStore {
    public func writeAndWait<T: Sendable>(_ unit: @escaping @Sendable (any AccountTransaction) throws -> T) throws(StoreError) -> T {
        let box = WaitBox<T>()
        write(unit) { box.put($0) }
        return try box.take().get()
    }

    public func readAndWait<T: Sendable>(_ body: @escaping @Sendable (any AccountTransaction) throws -> T) throws(StoreError) -> T {
        let box = WaitBox<T>()
        read(body) { box.put($0) }
        return try box.take().get()
    }
}

private final class WaitBox<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, StoreError>?

    func put(_ result: Result<T, StoreError>) {
        self.result = result
        done.signal()
    }

    func take() -> Result<T, StoreError> {
        done.wait()
        return result!
    }
}
