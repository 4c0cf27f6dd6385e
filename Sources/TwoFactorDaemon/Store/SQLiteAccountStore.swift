// The SQLite implementation of AccountStore: one file in the state directory, WAL journal,
// synchronous=FULL (checked), and one writer at a time: a lone unit is committed on its caller's
// thread, and units that queue meanwhile are group-committed by the writer thread.
import Foundation
import GRDB
import TwoFactorCore

public final class SQLiteAccountStore: AccountStore, @unchecked Sendable {
    public let path: String
    private let pool: DatabasePool
    private let readQueue = DispatchQueue(label: "twofactord.store.read", attributes: .concurrent)
    /// Read-only connections of their own for `readNow`, each used by one connection's thread at
    /// a time: never shared with `read`, whose long reads (list) could otherwise make them wait.
    /// Busy means "not now" (nil), not a 10 s wait.
    private let immediateReaders: [ImmediateReader]

    // Writer state, guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [PendingUnit] = []
    /// A batch is being run, by the writer thread or by a caller of `write` (only one at a time).
    private var running = false
    private var closing = false
    private var writerFinished = false
    private var closed = false
    private var stats = GroupCommitStatistics()
    /// Test hook: the next N transactions fail at commit (a real SQLite COMMIT that fails; see
    /// SQLiteWriteTransaction.run).
    var failingCommitsForTesting = 0

    /// Opens (creating if needed) the database and brings its schema up to date.
    public init(path: String) throws(StoreError) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.label = "twofactord"
            configuration.busyMode = .timeout(10)
            configuration.maximumReaderCount = 4
            pool = try DatabasePool(path: path, configuration: configuration)
            // DatabasePool sets synchronous=NORMAL on its own; in WAL mode that can lose the last
            // commits on power loss (a used code would become usable again). Force FULL and check.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                let synchronous = try Int.fetchOne(db, sql: "PRAGMA synchronous")
                guard synchronous == 2 else { throw StoreError("PRAGMA synchronous is \(synchronous ?? -1), expected FULL (2)") }
                let journal = try String.fetchOne(db, sql: "PRAGMA journal_mode")
                guard journal?.lowercased() == "wal" else { throw StoreError("journal mode is \(journal ?? "?"), expected wal") }
            }
            try Self.migrator.migrate(pool)
            immediateReaders = try (0..<ImmediateReader.count).map { _ in try ImmediateReader(path: path) }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("cannot open \(path): \(error)")
        }
        let thread = Thread { [unowned self] in self.writerLoop() }
        thread.name = "twofactord-writer"
        thread.start()
    }

    /// The synchronous setting of the writer connection, for tests: 2 means FULL.
    public func synchronousSetting() throws -> Int? {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
    }

    public var statistics: GroupCommitStatistics {
        condition.lock(); defer { condition.unlock() }
        return stats
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: accounts and recovery codes") { db in
            try db.execute(sql: """
                CREATE TABLE account (
                    name TEXT PRIMARY KEY NOT NULL,
                    secret BLOB, algorithm TEXT, digits INTEGER, period INTEGER, enrolled_at INTEGER,
                    pending_secret BLOB, pending_algorithm TEXT, pending_digits INTEGER,
                    pending_period INTEGER, pending_since INTEGER,
                    last_step INTEGER, last_used_at INTEGER,
                    failures INTEGER NOT NULL DEFAULT 0, locked_until INTEGER,
                    lockouts INTEGER NOT NULL DEFAULT 0, drift_steps INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE recovery_code (
                    account TEXT NOT NULL REFERENCES account(name) ON DELETE CASCADE,
                    hash BLOB NOT NULL,
                    used_at INTEGER,
                    PRIMARY KEY (account, hash)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2: HOTP enrollments and per-account windows") { db in
            try db.execute(sql: """
                ALTER TABLE account ADD COLUMN kind TEXT NOT NULL DEFAULT 'totp';
                ALTER TABLE account ADD COLUMN pending_kind TEXT NOT NULL DEFAULT 'totp';
                ALTER TABLE account ADD COLUMN hotp_counter INTEGER;
                ALTER TABLE account ADD COLUMN hotp_resync_counter INTEGER;
                ALTER TABLE account ADD COLUMN account_window INTEGER;
                """)
        }
        // Enforcement's grace logins (enforce_grace_logins), per account, enrolled or not.
        migrator.registerMigration("v3: grace logins") { db in
            try db.execute(sql: "ALTER TABLE account ADD COLUMN grace_logins_used INTEGER NOT NULL DEFAULT 0")
        }
        return migrator
    }

    // MARK: AccountStore

    public func write<T: Sendable>(_ unit: @escaping @Sendable (any AccountTransaction) throws -> T,
                                   completion: @escaping @Sendable (Result<T, StoreError>) -> Void) {
        let pending = PendingUnit(unit: unit, completion: completion)
        condition.lock()
        if closing {
            condition.unlock()
            completion(.failure(StoreError("the store is closed")))
            return
        }
        if !running && queue.isEmpty {
            // Nothing is being written and nothing waits: commit it here, on the caller's thread.
            // A lone verify (one login at a time) is spared the hand-over to the writer thread
            // and back, two wake-ups of another thread. `running` keeps every unit serialised.
            running = true
            let failCommit = takeInjectedCommitFailure()
            condition.unlock()
            commit([pending], failCommit: failCommit)
            return
        }
        queue.append(pending)
        condition.signal()
        condition.unlock()
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any AccountTransaction) throws -> T,
                                  completion: @escaping @Sendable (Result<T, StoreError>) -> Void) {
        condition.lock()
        let isClosed = closed
        condition.unlock()
        if isClosed { completion(.failure(StoreError("the store is closed"))); return }
        readQueue.async { [pool] in
            do {
                let value = try pool.read { db in try body(SQLiteTransaction(db: db)) }
                completion(.success(value))
            } catch {
                completion(.failure(StoreError("read failed: \(error)")))
            }
        }
    }

    public func readNow<T>(_ body: (any AccountTransaction) throws -> T) -> T? {
        for reader in immediateReaders {
            if let value = reader.readIfFree(body) { return value }
        }
        return nil
    }

    public func close() {
        for reader in immediateReaders { reader.close() }
        condition.lock()
        if closed { condition.unlock(); return }
        closing = true
        condition.broadcast()
        while !writerFinished { condition.wait() }
        closed = true
        condition.unlock()
        readQueue.sync(flags: .barrier) {}
        try? pool.close()
    }

    // MARK: The writer

    /// Takes what queued while a batch ran, as one batch, until the store closes.
    private func writerLoop() {
        while true {
            condition.lock()
            while running || (queue.isEmpty && !closing) { condition.wait() }
            if queue.isEmpty {  // closing, and everything queued is done
                writerFinished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            running = true
            let failCommit = takeInjectedCommitFailure()
            condition.unlock()
            commit(batch, failCommit: failCommit)
        }
    }

    /// Runs one batch (the caller has set `running`), then answers its units.
    private func commit(_ batch: [PendingUnit], failCommit: Bool) {
        let committed = runBatch(batch, failCommit: failCommit)
        condition.lock()
        stats.transactions += 1
        stats.units += batch.count
        stats.largestBatch = max(stats.largestBatch, batch.count)
        if !committed { stats.failedTransactions += 1 }
        running = false
        // The writer thread takes what queued meanwhile (or finishes, when closing).
        if !queue.isEmpty || closing { condition.broadcast() }
        condition.unlock()
        // Answer only now: every result below is durable (or reported as a failure). Each answer
        // is a wake-up of the waiting thread, which makes its audit line and answer itself.
        for unit in batch { unit.deliver(committed: committed) }
    }

    /// Guarded by `condition`: whether the batch about to run is to fail its commit (test hook).
    private func takeInjectedCommitFailure() -> Bool {
        guard failingCommitsForTesting > 0 else { return false }
        failingCommitsForTesting -= 1
        return true
    }

    /// Runs the batch's units in one transaction. Returns whether it committed (a unit's own
    /// failure is its result, not the batch's).
    private func runBatch(_ batch: [PendingUnit], failCommit: Bool) -> Bool {
        do {
            return try pool.writeWithoutTransaction { db in
                let transaction = SQLiteTransaction(db: db)
                // Units almost never fail (a store or key error): first try them all with no
                // savepoints. allSatisfy stops at a failure, and the transaction is rolled back.
                if try SQLiteWriteTransaction.run(db, failCommit: failCommit, { batch.allSatisfy { $0.execute(transaction) } }) {
                    return true
                }
                // A lone unit's failure needs no second run. Otherwise run the batch again with a
                // savepoint per unit, so only the failing unit's changes are undone (a unit may be
                // run again: its result is replaced).
                if batch.count == 1 { return true }
                _ = try SQLiteWriteTransaction.run(db, failCommit: failCommit) {
                    for unit in batch {
                        do {
                            _ = try SQLiteWriteTransaction.savepoint(db) { unit.execute(transaction) }
                        } catch {
                            unit.fail(StoreError("savepoint failed: \(error)"))
                        }
                    }
                    return true
                }
                return true
            }
        } catch {
            return false
        }
    }
}

/// One read-only connection for `readNow`, taken only when no other thread holds it.
private final class ImmediateReader: @unchecked Sendable {
    /// Enough for the connections that usually ask at once (a few per core): beyond that a
    /// `check` goes to the store's read queue, a thread hop instead of a wait.
    static let count = max(8, min(32, 4 * ProcessInfo.processInfo.activeProcessorCount))
    /// Their page caches together hold at most 16 MiB, so the daemon's memory stays flat however
    /// many readers and accounts there are (the kernel caches the file). On up to 8 readers that
    /// is SQLite's default of about 2 MiB each: a smaller cache made a `check` read pages from the
    /// file more often (docs/PERFORMANCE-NOTES.md, fifth round).
    static let cacheKiB = 16 * 1024 / count

    private let connection: SQLiteReadConnection
    private let lock = NSLock()
    private var closed = false

    init(path: String) throws(StoreError) {
        connection = try SQLiteReadConnection(path: path, cacheKiB: Self.cacheKiB)
    }

    /// The body's value; nil when another thread holds this reader, it is closed, or the read
    /// failed (any failure, busy or I/O, is left to `read`, which waits, retries and reports it).
    func readIfFree<T>(_ body: (any AccountTransaction) throws -> T) -> T? {
        guard lock.try() else { return nil }
        defer { lock.unlock() }
        guard !closed else { return nil }
        // One statement needs no transaction of its own: SQLite reads it from one snapshot.
        return try? body(SQLiteTransaction(db: connection))
    }

    func close() {
        lock.lock()
        if !closed { connection.close() }
        closed = true
        lock.unlock()
    }
}

public struct GroupCommitStatistics: Sendable, Equatable {
    public var transactions = 0
    public var units = 0
    public var largestBatch = 0
    public var failedTransactions = 0
    /// PostgreSQL: transactions rolled back and run again after a conflict with another daemon.
    public var conflictRetries = 0
}

/// A queued unit of work with its result, type-erased so one batch can hold units of any result type.
/// (Shared with PostgresAccountStore, whose writer batches the same way.)
final class PendingUnit: @unchecked Sendable {
    private let run: (any AccountTransaction) -> Bool
    private let complete: (_ committed: Bool) -> Void
    private let failure: (StoreError) -> Void

    init<T: Sendable>(unit: @escaping @Sendable (any AccountTransaction) throws -> T,
                      completion: @escaping @Sendable (Result<T, StoreError>) -> Void) {
        let box = ResultBox<T>()
        run = { transaction in
            do {
                box.result = .success(try unit(transaction))
                return true
            } catch let error as StoreError {
                box.result = .failure(error)
            } catch {
                box.result = .failure(StoreError("\(error)"))
            }
            return false
        }
        failure = { error in box.result = .failure(error) }
        complete = { committed in
            if committed, let result = box.result {
                completion(result)
            } else {
                completion(.failure(StoreError("the transaction did not commit")))
            }
        }
    }

    /// Runs the unit; false when it failed (its savepoint is then rolled back). Running it again
    /// (PostgreSQL: after a conflict) replaces the earlier result.
    func execute(_ transaction: any AccountTransaction) -> Bool { run(transaction) }
    func fail(_ error: StoreError) { failure(error) }
    func deliver(committed: Bool) { complete(committed) }
}

/// Only the writer thread touches `result`, and it delivers after running.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    var result: Result<T, StoreError>?
}

/// AccountTransaction over one connection: GRDB's (the writer, the read queue) or an immediate
/// reader's.
struct SQLiteTransaction: AccountTransaction {
    let db: any SQLiteStatementSource

    func account(named name: String) throws -> AccountRecord? {
        try SQLiteAccountRows.fetch(db, SQLiteAccountRows.byName, [.text(name)]).first
    }

    func loginState(of name: String) throws -> LoginState {
        var state = LoginState()
        try SQLiteStatementCalls.run(db, "SELECT secret IS NOT NULL, grace_logins_used FROM account WHERE name = ?",
                                     [.text(name)]) { raw in
            state = LoginState(enrolled: SQLiteColumn.integer(raw, 0) == 1, graceLoginsUsed: SQLiteColumn.integer(raw, 1) ?? 0)
        }
        return state
    }

    func allAccounts() throws -> [AccountRecord] {
        try SQLiteAccountRows.fetch(db, SQLiteAccountRows.all, [])
    }

    func accounts(after: String?, limit: Int) throws -> [AccountRecord] {
        // name is the primary key: both forms walk its index, no sort.
        if let after {
            return try SQLiteAccountRows.fetch(db, SQLiteAccountRows.pageAfter, [.text(after), .integer(limit)])
        }
        return try SQLiteAccountRows.fetch(db, SQLiteAccountRows.firstPage, [.integer(limit)])
    }

    func save(_ account: AccountRecord) throws {
        let e = account.enrollment, p = account.pending
        try SQLiteStatementCalls.run(db, """
            INSERT INTO account (name, secret, algorithm, digits, period, enrolled_at,
                pending_secret, pending_algorithm, pending_digits, pending_period, pending_since,
                last_step, last_used_at, failures, locked_until, lockouts, drift_steps,
                kind, pending_kind, hotp_counter, hotp_resync_counter, account_window, grace_logins_used)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET secret = excluded.secret, algorithm = excluded.algorithm,
                digits = excluded.digits, period = excluded.period, enrolled_at = excluded.enrolled_at,
                pending_secret = excluded.pending_secret, pending_algorithm = excluded.pending_algorithm,
                pending_digits = excluded.pending_digits, pending_period = excluded.pending_period,
                pending_since = excluded.pending_since, last_step = excluded.last_step,
                last_used_at = excluded.last_used_at, failures = excluded.failures,
                locked_until = excluded.locked_until, lockouts = excluded.lockouts,
                drift_steps = excluded.drift_steps, kind = excluded.kind, pending_kind = excluded.pending_kind,
                hotp_counter = excluded.hotp_counter, hotp_resync_counter = excluded.hotp_resync_counter,
                account_window = excluded.account_window, grace_logins_used = excluded.grace_logins_used
            """, [
                .text(account.name), .blob(e?.sealedSecret), .text(e?.algorithm), .integer(e?.digits), .integer(e?.period),
                .integer(e?.createdAt), .blob(p?.sealedSecret), .text(p?.algorithm), .integer(p?.digits),
                .integer(p?.period), .integer(p?.createdAt), .integer(account.lastStep), .integer(account.lastUsedAt),
                .integer(account.failures), .integer(account.lockedUntil), .integer(account.lockouts),
                .integer(account.driftSteps), .text(e?.kind ?? OTPKind.totp.rawValue), .text(p?.kind ?? OTPKind.totp.rawValue),
                .integer(account.hotpCounter), .integer(account.hotpResyncCounter), .integer(account.window),
                .integer(account.graceLoginsUsed),
            ])
    }

    func deleteAccount(named name: String) throws {
        try SQLiteStatementCalls.run(db, "DELETE FROM recovery_code WHERE account = ?", [.text(name)])
        try SQLiteStatementCalls.run(db, "DELETE FROM account WHERE name = ?", [.text(name)])
    }

    func recoveryCodes(of name: String) throws -> [RecoveryCodeRecord] {
        var records: [RecoveryCodeRecord] = []
        try SQLiteStatementCalls.run(db, "SELECT hash, used_at FROM recovery_code WHERE account = ?", [.text(name)]) { raw in
            records.append(RecoveryCodeRecord(hash: SQLiteColumn.blob(raw, 0) ?? [], usedAt: SQLiteColumn.int64(raw, 1)))
        }
        return records
    }

    func recoveryCodesLeft(of name: String) throws -> Int {
        try SQLiteStatementCalls.integer(db, "SELECT COUNT(*) FROM recovery_code WHERE account = ? AND used_at IS NULL", [.text(name)])
    }

    func markRecoveryCodeUsed(of name: String, hash: [UInt8], at time: Int64) throws -> Bool {
        try SQLiteStatementCalls.change(db, "UPDATE recovery_code SET used_at = ? WHERE account = ? AND hash = ? AND used_at IS NULL",
                                        [.integer(time), .text(name), .blob(hash)]) == 1
    }

    func replaceRecoveryCodes(of name: String, hashes: [[UInt8]]) throws {
        try SQLiteStatementCalls.run(db, "DELETE FROM recovery_code WHERE account = ?", [.text(name)])
        for hash in hashes {
            try SQLiteStatementCalls.run(db, "INSERT INTO recovery_code (account, hash) VALUES (?, ?)", [.text(name), .blob(hash)])
        }
    }
}
