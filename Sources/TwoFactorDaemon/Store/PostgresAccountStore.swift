// The PostgreSQL implementation of AccountStore, for a fleet of daemons that share one database
// (docs/POSTGRESQL.md). The guarantees of AccountStore.swift hold across daemons because the
// database enforces them:
//  - a writing unit reads its account with SELECT ... FOR UPDATE, so units on the same account
//    serialise across every daemon; the read-check-write of a code happens under that row lock,
//    in one transaction (and marking a recovery code used is a conditional UPDATE besides);
//  - one writer thread per daemon group-commits queued units: BEGIN, each unit in its own
//    savepoint, COMMIT; answers leave only after COMMIT returned. A unit that fails is rolled
//    back to its savepoint; a serialization failure or deadlock with another daemon's batch rolls
//    the whole transaction back and runs the batch again; anything else that breaks the
//    transaction (connection lost, timeout, failed COMMIT) fails every unit of the batch;
//  - every unit of work has a deadline, postgres_timeout after it was queued; a batch runs until
//    the earliest deadline of its units, and a unit still queued at its deadline is refused
//    unrun. Past the deadline the connection is closed, which makes the server roll the
//    transaction back, and the units fail (the daemon answers internalError, which the PAM
//    module treats as "daemon unavailable"). A lost connection is re-opened on demand, at most
//    once per backoff interval (doubling to 5 s while it fails).
import TwoFactorCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

public final class PostgresAccountStore: AccountStore, @unchecked Sendable {
    public let settings: PostgresSettings
    private let group: MultiThreadedEventLoopGroup
    private let writer: PostgresSession
    private let reader: PostgresSession
    private let readQueue = DispatchQueue(label: "twofactord.pgstore.read")
    private let deliveryQueue = DispatchQueue(label: "twofactord.pgstore.deliver", attributes: .concurrent)
    private let deliveries = DispatchGroup()

    // Writer state, guarded by `condition`.
    private let condition = NSCondition()
    /// Each unit with its deadline: postgres_timeout from when it was queued.
    private var queue: [(unit: PendingUnit, deadline: NIODeadline)] = []
    private var closing = false
    private var writerFinished = false
    private var closed = false
    private var stats = GroupCommitStatistics()
    /// Test hook: the next N transactions fail at COMMIT (a deferred constraint the server checks
    /// at commit time, so this is a real commit failure).
    var failingCommitsForTesting = 0

    /// A batch that conflicts with another daemon's transaction is run again at most this often.
    static let conflictRetries = 5

    /// Connects, creates or migrates the schema (under an advisory lock, so daemons starting at
    /// once take turns), and starts the writer. Throws if the database cannot be reached.
    public init(settings: PostgresSettings) throws(StoreError) {
        self.settings = settings
        if let problem = settings.problem { throw StoreError(problem) }
        let password = try settings.readPassword()
        let configuration = try Self.connectionConfiguration(settings, password: password)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        writer = PostgresSession(name: "writer", configuration: configuration, timeout: settings.timeout, group: group)
        reader = PostgresSession(name: "reader", configuration: configuration, timeout: settings.timeout, group: group)
        do throws(StoreError) {
            try PostgresSchema.migrate(writer, deadline: .now() + .seconds(Int64(max(30, settings.timeout))))
        } catch {
            writer.close()
            try? group.syncShutdownGracefully()
            throw error
        }
        let thread = Thread { [unowned self] in self.writerLoop() }
        thread.name = "twofactord-pg-writer"
        thread.start()
    }

    /// The writer connection's state, for `twofactor admin health` and the like.
    public var health: PostgresStoreHealth { writer.health }

    public var statistics: GroupCommitStatistics {
        condition.lock(); defer { condition.unlock() }
        return stats
    }

    /// The server's synchronous_commit for the writer's session, for tests and diagnostics.
    public func synchronousCommit() throws -> String {
        try readQueue.sync {
            let rows = try reader.query("SHOW synchronous_commit", deadline: .now() + .seconds(5))
            return try rows.first.map { try $0.makeRandomAccess()[0].decode(String.self) } ?? "?"
        }
    }

    static func connectionConfiguration(_ settings: PostgresSettings, password: String?) throws(StoreError) -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if settings.host.hasPrefix("/") {
            configuration = .init(unixSocketPath: settings.host + "/.s.PGSQL.\(settings.port)", username: settings.user,
                                  password: password, database: settings.database)
        } else {
            var tls = PostgresConnection.Configuration.TLS.disable
            if settings.tlsMode != .disable {
                var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
                tlsConfiguration.minimumTLSVersion = .tlsv12
                tlsConfiguration.certificateVerification = settings.tlsMode == .verifyFull ? .fullVerification : .noHostnameVerification
                do {
                    if !settings.caFile.isEmpty { tlsConfiguration.trustRoots = .file(settings.caFile) }
                    if !settings.certificateFile.isEmpty {
                        tlsConfiguration.certificateChain = try NIOSSLCertificate.fromPEMFile(settings.certificateFile).map { .certificate($0) }
                        tlsConfiguration.privateKey = .privateKey(try NIOSSLPrivateKey(file: settings.privateKeyFile, format: .pem))
                    }
                    tls = .require(try NIOSSLContext(configuration: tlsConfiguration))
                } catch {
                    throw StoreError("TLS setup for \(settings.displayName): \(error)")
                }
            }
            configuration = .init(host: settings.host, port: settings.port, username: settings.user, password: password,
                                  database: settings.database, tls: tls)
        }
        configuration.options.connectTimeout = .milliseconds(Int64(settings.timeout * 1000))
        return configuration
    }

    /// Runs `statements` one by one outside any transaction on a connection of its own (tests:
    /// CREATE and DROP DATABASE; tools).
    static func runStatements(_ settings: PostgresSettings, _ statements: [String]) throws {
        let configuration = try connectionConfiguration(settings, password: try settings.readPassword())
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let session = PostgresSession(name: "admin", configuration: configuration, timeout: settings.timeout, group: group)
        defer { session.close() }
        for statement in statements {
            try session.execute(PostgresQuery(unsafeSQL: statement), deadline: .now() + .seconds(30))
        }
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
        queue.append((pending, .now() + .milliseconds(Int64(settings.timeout * 1000))))
        condition.signal()
        condition.unlock()
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any AccountTransaction) throws -> T,
                                  completion: @escaping @Sendable (Result<T, StoreError>) -> Void) {
        condition.lock()
        let isClosed = closed
        condition.unlock()
        if isClosed { completion(.failure(StoreError("the store is closed"))); return }
        readQueue.async { [reader, settings] in
            let deadline = NIODeadline.now() + .milliseconds(Int64(settings.timeout * 1000))
            do {
                try reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", deadline: deadline)
                let transaction = PostgresTransaction(session: reader, deadline: deadline, locking: false)
                let value: T
                do {
                    value = try body(transaction)
                } catch {
                    try? reader.execute("ROLLBACK", deadline: deadline)
                    throw error
                }
                try reader.execute("COMMIT", deadline: deadline)
                completion(.success(value))
            } catch {
                reader.abandonTransaction(deadline: deadline)
                completion(.failure(StoreError("read failed: \(error)")))
            }
        }
    }

    public func close() {
        condition.lock()
        if closed { condition.unlock(); return }
        closing = true
        condition.broadcast()
        while !writerFinished { condition.wait() }
        closed = true
        condition.unlock()
        readQueue.sync { reader.close() }
        deliveries.wait()
        try? group.syncShutdownGracefully()
    }

    // MARK: The writer

    private func writerLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !closing { condition.wait() }
            if queue.isEmpty && closing {
                // Closed before close() may shut the event loops down.
                writer.close()
                writerFinished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            // A unit that already waited its whole timeout behind a slow batch is refused at once,
            // so every answer leaves within postgres_timeout of the request.
            let now = NIODeadline.now()
            let expired = queue.filter { $0.deadline <= now }.map(\.unit)
            let live = queue.filter { $0.deadline > now }
            queue.removeAll(keepingCapacity: true)
            let batch = live.map(\.unit)
            let deadline = live.map(\.deadline).min() ?? now
            let failCommit = failingCommitsForTesting > 0
            if failCommit { failingCommitsForTesting -= 1 }
            condition.unlock()

            let committed = !batch.isEmpty && runBatch(batch, failCommit: failCommit, deadline: deadline)

            condition.lock()
            stats.units += batch.count + expired.count
            if !batch.isEmpty {
                stats.transactions += 1
                stats.largestBatch = max(stats.largestBatch, batch.count)
                if !committed { stats.failedTransactions += 1 }
            }
            condition.unlock()
            // Answer only now: every result below is committed (or reported as a failure).
            deliveries.enter()
            deliveryQueue.async { [deliveries] in
                for unit in batch { unit.deliver(committed: committed) }
                for unit in expired { unit.deliver(committed: false) }
                deliveries.leave()
            }
        }
    }

    /// Runs every unit in one transaction, each in its own savepoint. Returns whether COMMIT
    /// succeeded; when the outcome is unknown (connection lost during COMMIT) that is false too:
    /// a code that may have been spent is then refused, never accepted twice. A conflict with
    /// another daemon's transaction (deadlock, serialization failure) rolls the whole transaction
    /// back, releasing every lock it held, and runs the batch again.
    private func runBatch(_ batch: [PendingUnit], failCommit: Bool, deadline: NIODeadline) -> Bool {
        for _ in 0...Self.conflictRetries {
            do {
                return try attempt(batch, failCommit: failCommit, deadline: deadline)
            } catch let failure as PostgresFailure where failure.isConflict {
                writer.abandonTransaction(deadline: deadline)
                condition.lock(); stats.conflictRetries += 1; condition.unlock()
            } catch {
                writer.abandonTransaction(deadline: deadline)
                return false
            }
        }
        return false
    }

    private func attempt(_ batch: [PendingUnit], failCommit: Bool, deadline: NIODeadline) throws -> Bool {
        try writer.execute("BEGIN ISOLATION LEVEL READ COMMITTED", deadline: deadline)
        for unit in batch {
            try writer.execute("SAVEPOINT unit", deadline: deadline)
            let transaction = PostgresTransaction(session: writer, deadline: deadline, locking: true)
            let succeeded = unit.execute(transaction)
            // Lost connection, timeout or conflict: the batch as a whole fails or runs again.
            if let failure = transaction.failure, !failure.isServerError || failure.isConflict { throw failure }
            if succeeded && transaction.failure == nil {
                try writer.execute("RELEASE SAVEPOINT unit", deadline: deadline)
            } else {
                try writer.execute("ROLLBACK TO SAVEPOINT unit", deadline: deadline)
                // A unit that caught a database error itself still may not report success.
                if succeeded, let failure = transaction.failure { unit.fail(StoreError("database: \(failure)")) }
            }
        }
        if failCommit {
            try writer.execute("CREATE TEMPORARY TABLE IF NOT EXISTS twofactor_commit_guard (x integer UNIQUE DEFERRABLE INITIALLY DEFERRED)",
                               deadline: deadline)
            try writer.execute("INSERT INTO twofactor_commit_guard VALUES (1), (1)", deadline: deadline)
        }
        let result = try writer.execute("COMMIT", deadline: deadline)
        // COMMIT of a transaction the server had already aborted answers ROLLBACK, not an error.
        return result.command == "COMMIT"
    }
}

// MARK: Schema

enum PostgresSchema {
    /// Any constant shared by every twofactord: the key of the advisory lock that serialises
    /// schema changes ('2fa-schm' in ASCII).
    static let advisoryLockKey: Int64 = 0x3266_612d_7363_686d

    /// Named like SQLiteAccountStore's migrations, in the same order; a column added there is
    /// added here by a migration of the same name. Column types are bigint throughout, so every
    /// Swift integer binds without a cast; names compare byte by byte (COLLATE "C"), as in SQLite.
    static let migrations: [(name: String, statements: [String])] = [
        ("v1: accounts and recovery codes", [
            """
            CREATE TABLE account (
                name text COLLATE "C" PRIMARY KEY,
                secret bytea, algorithm text, digits bigint, period bigint, enrolled_at bigint,
                pending_secret bytea, pending_algorithm text, pending_digits bigint,
                pending_period bigint, pending_since bigint,
                last_step bigint, last_used_at bigint,
                failures bigint NOT NULL DEFAULT 0, locked_until bigint,
                lockouts bigint NOT NULL DEFAULT 0, drift_steps bigint NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE recovery_code (
                account text COLLATE "C" NOT NULL REFERENCES account(name) ON DELETE CASCADE,
                hash bytea NOT NULL,
                used_at bigint,
                PRIMARY KEY (account, hash)
            )
            """,
        ]),
        ("v2: HOTP enrollments and per-account windows", [
            "ALTER TABLE account ADD COLUMN kind text NOT NULL DEFAULT 'totp'",
            "ALTER TABLE account ADD COLUMN pending_kind text NOT NULL DEFAULT 'totp'",
            "ALTER TABLE account ADD COLUMN hotp_counter bigint",
            "ALTER TABLE account ADD COLUMN hotp_resync_counter bigint",
            "ALTER TABLE account ADD COLUMN account_window bigint",
        ]),
        ("v3: grace logins", [
            "ALTER TABLE account ADD COLUMN grace_logins_used bigint NOT NULL DEFAULT 0",
        ]),
    ]

    /// Brings the schema up to date in one transaction under the advisory lock: a daemon that
    /// starts while another migrates waits for it, then finds nothing left to do.
    static func migrate(_ session: PostgresSession, deadline: NIODeadline) throws(StoreError) {
        do {
            try session.execute("BEGIN", deadline: deadline)
            try session.execute("SELECT pg_advisory_xact_lock(\(advisoryLockKey))", deadline: deadline)
            try session.execute("""
                CREATE TABLE IF NOT EXISTS twofactor_migration (
                    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """, deadline: deadline)
            let applied = Set(try session.query("SELECT name FROM twofactor_migration", deadline: deadline)
                .map { try $0.makeRandomAccess()[0].decode(String.self) })
            let known = Set(migrations.map(\.name))
            if let unknown = applied.subtracting(known).sorted().first {
                throw StoreError("the database schema is newer than this twofactord (it has migration '\(unknown)'); upgrade twofactord")
            }
            for migration in migrations where !applied.contains(migration.name) {
                for statement in migration.statements { try session.execute(PostgresQuery(unsafeSQL: statement), deadline: deadline) }
                try session.execute("INSERT INTO twofactor_migration (name) VALUES (\(migration.name))", deadline: deadline)
            }
            try session.execute("COMMIT", deadline: deadline)
        } catch let error as StoreError {
            session.abandonTransaction(deadline: deadline)
            throw error
        } catch {
            session.abandonTransaction(deadline: deadline)
            throw StoreError("cannot prepare the schema: \(error)")
        }
    }
}

// MARK: One connection, used from one thread at a time

/// What a store's connection last saw: connected or not, since when, and the last failure
/// (SQLSTATE and the server's message, or the connection error; never a password).
public struct PostgresStoreHealth: Sendable, Equatable {
    public var connected: Bool
    /// Unix seconds of the last successful connect, if any.
    public var connectedAt: Int64?
    /// Unix seconds of the last failure, and what it was.
    public var failedAt: Int64?
    public var lastFailure: String?
    /// Connections opened so far (1 plus the reconnects).
    public var connections: Int
}

/// What went wrong with a statement, described without anything the client sent (PSQLError's
/// own description hides everything; this keeps the server's SQLSTATE and message).
struct PostgresFailure: Error, CustomStringConvertible {
    var sqlState: String?
    var message: String

    init(_ error: any Error) {
        if let failure = error as? PostgresFailure {
            self = failure
        } else if let error = error as? PSQLError {
            if let info = error.serverInfo {
                sqlState = info[.sqlState]
                message = "\(info[.sqlState] ?? "?"): \(info[.message] ?? "server error")"
            } else {
                message = "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
            }
        } else {
            message = "\(error)"
        }
    }

    init(message: String) { self.message = message }

    /// The server refused a statement and the connection is still usable; anything else
    /// (connection lost, timed out, TLS) leaves the session closed.
    var isServerError: Bool { sqlState != nil && !(sqlState!.hasPrefix("57P") || sqlState!.hasPrefix("08")) }
    /// serialization_failure or deadlock_detected: run the unit again.
    var isConflict: Bool { sqlState == "40001" || sqlState == "40P01" }
    var description: String { message }
}

/// One PostgreSQL connection, opened on demand and reopened after it breaks, with a backoff
/// while the server stays unreachable. Its queries block the calling thread until the answer
/// or the deadline; a query past its deadline closes the connection, and with it the
/// server's side of the transaction.
final class PostgresSession: @unchecked Sendable {
    let name: String
    private let configuration: PostgresConnection.Configuration
    private let timeout: Double
    private let group: any EventLoopGroup
    private let logger = Logger(label: "twofactord.postgres") { _ in SwiftLogNoOpLogHandler() }
    private var connection: PostgresConnection?
    private var nextAttempt = NIODeadline.uptimeNanoseconds(0)
    private var backoff = PostgresSession.firstBackoff
    private var connectionCount = 0
    /// Read from other threads (health); written by the session's own thread.
    private let healthLock = NSLock()
    private var status = PostgresStoreHealth(connected: false, connections: 0)

    /// As of the last statement: a connection the server dropped while idle shows at next use.
    var health: PostgresStoreHealth {
        healthLock.lock(); defer { healthLock.unlock() }
        return status
    }

    private func record(connected: Bool, failure: PostgresFailure? = nil) {
        let now = Int64(Date().timeIntervalSince1970)
        healthLock.lock(); defer { healthLock.unlock() }
        status.connected = connected
        if connected {
            status.connectedAt = now
            status.connections += 1
        }
        if let failure {
            status.failedAt = now
            status.lastFailure = failure.message
        }
    }

    static let firstBackoff = TimeAmount.milliseconds(100)
    static let maximumBackoff = TimeAmount.seconds(5)

    init(name: String, configuration: PostgresConnection.Configuration, timeout: Double, group: any EventLoopGroup) {
        self.name = name
        self.configuration = configuration
        self.timeout = timeout
        self.group = group
    }

    @discardableResult
    func execute(_ query: PostgresQuery, deadline: NIODeadline) throws -> PostgresQueryMetadata {
        try run(query, deadline: deadline).metadata
    }

    func query(_ query: PostgresQuery, deadline: NIODeadline) throws -> [PostgresRow] {
        try run(query, deadline: deadline).rows
    }

    private func run(_ query: PostgresQuery, deadline: NIODeadline) throws -> PostgresQueryResult {
        let connection = try open(deadline: deadline)
        do {
            return try Self.wait(connection.query(query, logger: logger), until: deadline) { _ in Self.closeSoon(connection) }
        } catch {
            let failure = PostgresFailure(error)
            if !failure.isServerError {
                drop()
                record(connected: false, failure: failure)
            }
            throw failure
        }
    }

    /// After a failed transaction: roll back if the connection still works, else close it.
    func abandonTransaction(deadline: NIODeadline) {
        guard connection != nil else { return }
        let soon = min(deadline, .now() + .milliseconds(500))
        do { try execute("ROLLBACK", deadline: max(soon, .now() + .milliseconds(200))) } catch { drop() }
    }

    /// Closes the connection and waits until it is closed (never call it on an event loop).
    func close() {
        guard let connection else { return }
        self.connection = nil
        let closed: EventLoopFuture<Void> = connection.close()
        _ = try? closed.wait()
    }

    private func drop() {
        if let connection { Self.closeSoon(connection) }
        connection = nil
    }

    private func open(deadline: NIODeadline) throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        connection = nil
        guard NIODeadline.now() >= nextAttempt else {
            throw PostgresFailure(message: "the database is unreachable (next connection attempt in \(max(0, (nextAttempt - .now()).nanoseconds / 1_000_000)) ms)")
        }
        var opened: PostgresConnection?
        do {
            connectionCount += 1
            let future = PostgresConnection.connect(on: group.next(), configuration: configuration, id: connectionCount, logger: logger)
            let connection = try Self.wait(future, until: deadline) { late in late.whenSuccess { Self.closeSoon($0) } }
            opened = connection
            try prepare(connection, deadline: deadline)
            self.connection = connection
            record(connected: true)
            backoff = Self.firstBackoff
            nextAttempt = .uptimeNanoseconds(0)
            return connection
        } catch {
            if let opened { Self.closeSoon(opened) }
            nextAttempt = .now() + backoff
            backoff = min(backoff * 2, Self.maximumBackoff)
            let failure = PostgresFailure(error)
            record(connected: false, failure: failure)
            throw failure
        }
    }

    /// The session settings every connection gets before its first unit of work.
    private func prepare(_ opened: PostgresConnection, deadline: NIODeadline) throws {
        // A lock wait or a slow server must not hold a unit past its deadline, and a daemon
        // that hangs mid-transaction must not hold its row locks for long.
        let milliseconds = Int64(timeout * 1000)
        for setting in ["statement_timeout = \(milliseconds)", "idle_in_transaction_session_timeout = \(milliseconds * 5)",
                        "application_name = 'twofactord'"] {
            _ = try Self.wait(opened.query(PostgresQuery(unsafeSQL: "SET \(setting)"), logger: logger), until: deadline) { _ in Self.closeSoon(opened) }
        }
        // Without synchronous_commit the server may answer COMMIT before the commit is on
        // disk, and a crash would make a spent code usable again. Other values (on,
        // remote_write, remote_apply) are the administrator's choice (docs/POSTGRESQL.md).
        let rows = try Self.wait(opened.query("SHOW synchronous_commit", logger: logger), until: deadline) { _ in Self.closeSoon(opened) }
        if try rows.rows.first?.makeRandomAccess()[0].decode(String.self) == "off" {
            _ = try Self.wait(opened.query("SET synchronous_commit = on", logger: logger), until: deadline) { _ in Self.closeSoon(opened) }
        }
    }

    /// Starts closing `connection` (the server then rolls back whatever it had open).
    static func closeSoon(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        // Hold the connection until it is closed: PostgresNIO must never free an open one.
        closed.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// Waits for `future` until `deadline`; past it, fails and calls `expired` with the future
    /// (to close what it may still deliver).
    static func wait<T: Sendable>(_ future: EventLoopFuture<T>, until deadline: NIODeadline,
                                  expired: @escaping @Sendable (EventLoopFuture<T>) -> Void) throws -> T {
        let loop = future.eventLoop
        let promise = loop.makePromise(of: T.self)
        let finished = FinishedFlag()
        let timer = loop.scheduleTask(deadline: deadline) {
            guard !finished.value else { return }
            finished.value = true
            promise.fail(PostgresFailure(message: "no answer from the database within the timeout"))
            expired(future)
        }
        future.whenComplete { result in
            guard !finished.value else { return }
            finished.value = true
            timer.cancel()
            promise.completeWith(result)
        }
        return try promise.futureResult.wait()
    }
}

/// Touched only on one event loop (the timer's and the future's, which are the same).
private final class FinishedFlag: @unchecked Sendable {
    var value = false
}

// MARK: The unit's view of the database

/// AccountTransaction over a session inside BEGIN ... COMMIT. In a writing unit (`locking`), an
/// account is read FOR UPDATE: the row stays locked until the batch commits, so a unit on
/// another daemon that reads the same account waits for this commit and then sees its writes.
final class PostgresTransaction: AccountTransaction {
    let session: PostgresSession
    let deadline: NIODeadline
    let locking: Bool
    /// The first database failure inside this unit (the batch decides from it).
    private(set) var failure: PostgresFailure?

    init(session: PostgresSession, deadline: NIODeadline, locking: Bool) {
        self.session = session
        self.deadline = deadline
        self.locking = locking
    }

    private func rows(_ query: PostgresQuery) throws -> [PostgresRow] {
        do { return try session.query(query, deadline: deadline) } catch { throw record(error) }
    }

    private func execute(_ query: PostgresQuery) throws -> PostgresQueryMetadata {
        do { return try session.execute(query, deadline: deadline) } catch { throw record(error) }
    }

    private func record(_ error: any Error) -> StoreError {
        let failure = PostgresFailure(error)
        if self.failure == nil { self.failure = failure }
        return StoreError("database: \(failure)")
    }

    private static let columns = """
        name, secret, algorithm, digits, period, enrolled_at, pending_secret, pending_algorithm, pending_digits, \
        pending_period, pending_since, last_step, last_used_at, failures, locked_until, lockouts, drift_steps, \
        kind, pending_kind, hotp_counter, hotp_resync_counter, account_window, grace_logins_used
        """

    func account(named name: String) throws -> AccountRecord? {
        let lock = locking ? " FOR UPDATE" : ""
        let found = try rows("SELECT \(unescaped: Self.columns) FROM account WHERE name = \(name)\(unescaped: lock)")
        return try found.first.map(Self.record)
    }

    func loginState(of name: String) throws -> LoginState {
        let found = try rows("SELECT secret IS NOT NULL, grace_logins_used FROM account WHERE name = \(name)")
        guard let row = found.first else { return LoginState() }
        let (enrolled, used) = try row.decode((Bool, Int64).self)
        return LoginState(enrolled: enrolled, graceLoginsUsed: Int(used))
    }

    func allAccounts() throws -> [AccountRecord] {
        try rows("SELECT \(unescaped: Self.columns) FROM account ORDER BY name").map(Self.record)
    }

    func accounts(after: String?, limit: Int) throws -> [AccountRecord] {
        // name is the primary key, COLLATE "C": byte order, as in SQLite.
        let limit = Int64(limit)
        if let after {
            return try rows("SELECT \(unescaped: Self.columns) FROM account WHERE name > \(after) ORDER BY name LIMIT \(limit)")
                .map(Self.record)
        }
        return try rows("SELECT \(unescaped: Self.columns) FROM account ORDER BY name LIMIT \(limit)").map(Self.record)
    }

    func save(_ account: AccountRecord) throws {
        let e = account.enrollment, p = account.pending
        let secret = e.map { Data($0.sealedSecret) }, pendingSecret = p.map { Data($0.sealedSecret) }
        let digits = e.map { Int64($0.digits) }, period = e.map { Int64($0.period) }
        let pendingDigits = p.map { Int64($0.digits) }, pendingPeriod = p.map { Int64($0.period) }
        let failures = Int64(account.failures), lockouts = Int64(account.lockouts)
        let kind = e?.kind ?? OTPKind.totp.rawValue, pendingKind = p?.kind ?? OTPKind.totp.rawValue
        let window = account.window.map(Int64.init), graceLoginsUsed = Int64(account.graceLoginsUsed)
        _ = try execute("""
            INSERT INTO account (\(unescaped: Self.columns))
            VALUES (\(account.name), \(secret), \(e?.algorithm), \(digits), \(period), \(e?.createdAt),
                    \(pendingSecret), \(p?.algorithm), \(pendingDigits), \(pendingPeriod), \(p?.createdAt),
                    \(account.lastStep), \(account.lastUsedAt), \(failures), \(account.lockedUntil),
                    \(lockouts), \(account.driftSteps), \(kind), \(pendingKind), \(account.hotpCounter),
                    \(account.hotpResyncCounter), \(window), \(graceLoginsUsed))
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
            """)
    }

    func deleteAccount(named name: String) throws {
        _ = try execute("DELETE FROM recovery_code WHERE account = \(name)")
        _ = try execute("DELETE FROM account WHERE name = \(name)")
    }

    func recoveryCodes(of name: String) throws -> [RecoveryCodeRecord] {
        try rows("SELECT hash, used_at FROM recovery_code WHERE account = \(name)").map { row in
            let (hash, usedAt) = try row.decode((Data, Int64?).self)
            return RecoveryCodeRecord(hash: [UInt8](hash), usedAt: usedAt)
        }
    }

    func recoveryCodesLeft(of name: String) throws -> Int {
        let found = try rows("SELECT COUNT(*) FROM recovery_code WHERE account = \(name) AND used_at IS NULL")
        return try found.first.map { Int(try $0.decode(Int64.self)) } ?? 0
    }

    func markRecoveryCodeUsed(of name: String, hash: [UInt8], at time: Int64) throws -> Bool {
        // Conditional: only a code still unused changes, whatever else runs at the same time.
        let result = try execute("""
            UPDATE recovery_code SET used_at = \(time) WHERE account = \(name) AND hash = \(Data(hash)) AND used_at IS NULL
            """)
        return result.rows == 1
    }

    func replaceRecoveryCodes(of name: String, hashes: [[UInt8]]) throws {
        _ = try execute("DELETE FROM recovery_code WHERE account = \(name)")
        for hash in hashes {
            _ = try execute("INSERT INTO recovery_code (account, hash) VALUES (\(name), \(Data(hash)))")
        }
    }

    private static func record(_ row: PostgresRow) throws -> AccountRecord {
        let r = row.makeRandomAccess()
        var record = AccountRecord(name: try r["name"].decode(String.self))
        if let secret = try r["secret"].decode(Data?.self) {
            record.enrollment = EnrollmentRecord(
                sealedSecret: [UInt8](secret), algorithm: try r["algorithm"].decode(String?.self) ?? "SHA1",
                digits: Int(try r["digits"].decode(Int64?.self) ?? 6), period: Int(try r["period"].decode(Int64?.self) ?? 30),
                createdAt: try r["enrolled_at"].decode(Int64?.self) ?? 0,
                kind: try r["kind"].decode(String.self))
        }
        if let secret = try r["pending_secret"].decode(Data?.self) {
            record.pending = EnrollmentRecord(
                sealedSecret: [UInt8](secret), algorithm: try r["pending_algorithm"].decode(String?.self) ?? "SHA1",
                digits: Int(try r["pending_digits"].decode(Int64?.self) ?? 6),
                period: Int(try r["pending_period"].decode(Int64?.self) ?? 30),
                createdAt: try r["pending_since"].decode(Int64?.self) ?? 0,
                kind: try r["pending_kind"].decode(String.self))
        }
        record.lastStep = try r["last_step"].decode(Int64?.self)
        record.lastUsedAt = try r["last_used_at"].decode(Int64?.self)
        record.failures = Int(try r["failures"].decode(Int64.self))
        record.lockedUntil = try r["locked_until"].decode(Int64?.self)
        record.lockouts = Int(try r["lockouts"].decode(Int64.self))
        record.driftSteps = try r["drift_steps"].decode(Int64.self)
        record.hotpCounter = try r["hotp_counter"].decode(Int64?.self)
        record.hotpResyncCounter = try r["hotp_resync_counter"].decode(Int64?.self)
        record.window = try r["account_window"].decode(Int64?.self).map { Int($0) }
        record.graceLoginsUsed = Int(try r["grace_logins_used"].decode(Int64.self))
        return record
    }
}
