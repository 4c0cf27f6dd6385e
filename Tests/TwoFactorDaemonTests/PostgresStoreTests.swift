// The PostgreSQL store against a real server: every test of StoreAndRulesTests again, then what
// only a shared database has (two stores on one database, as two daemons on two hosts would be).
// The server is the one TWOFACTOR_TEST_POSTGRES_URL names, as a user that may create databases;
// scripts/test-all starts a private cluster for it (Tests/integration/pg_kit.py run -- swift test).
// Without the variable these tests are skipped, saying so.
import Foundation
import TwoFactorCore
import TwoFactorWire
import XCTest
@testable import TwoFactorDaemon

/// What the store tests need beyond AccountStore: the group-commit counters and the commit hook.
protocol TestableStore: AccountStore {
    var failingCommitsForTesting: Int { get set }
    var statistics: GroupCommitStatistics { get }
}

extension SQLiteAccountStore: TestableStore {}
extension PostgresAccountStore: TestableStore {}

/// A fresh database on the test server for each test, dropped afterwards.
struct PostgresTestDatabase: Sendable {
    static let variable = "TWOFACTOR_TEST_POSTGRES_URL"
    let admin: PostgresSettings
    let settings: PostgresSettings

    init() throws {
        guard let url = ProcessInfo.processInfo.environment[Self.variable], !url.isEmpty else {
            throw XCTSkip("\(Self.variable) is not set: the PostgreSQL store tests need a server "
                          + "(run `python3 Tests/integration/pg_kit.py run -- swift test`)")
        }
        var admin = try PostgresSettings(url: url)
        admin.timeout = 30
        self.admin = admin
        var settings = admin
        settings.database = "tf_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        settings.timeout = 5
        self.settings = settings
        try PostgresAccountStore.runStatements(admin, ["CREATE DATABASE \(settings.database)"])
    }

    func drop() {
        try? PostgresAccountStore.runStatements(admin, ["DROP DATABASE IF EXISTS \(settings.database) WITH (FORCE)"])
    }
}

final class PostgresStoreAndRulesTests: StoreAndRulesTests {
    var database: PostgresTestDatabase?

    override func makeStore() throws -> any TestableStore {
        let database = try PostgresTestDatabase()
        self.database = database
        return try PostgresAccountStore(settings: database.settings)
    }

    override func tearDown() {
        super.tearDown()
        database?.drop()
    }

    override func testSynchronousIsFullAndJournalIsWAL() throws {
        throw XCTSkip("SQLite's settings; PostgreSQL's are checked by testSynchronousCommitIsNeverOff")
    }

    func testSynchronousCommitIsNeverOff() throws {
        let store = try XCTUnwrap(store as? PostgresAccountStore)
        XCTAssertNotEqual(try store.synchronousCommit(), "off")
        // Even where the server's default is off, the daemon's sessions turn it on.
        try PostgresAccountStore.runStatements(database!.admin, ["ALTER DATABASE \(database!.settings.database) SET synchronous_commit = off"])
        let second = try PostgresAccountStore(settings: database!.settings)
        defer { second.close() }
        XCTAssertEqual(try second.synchronousCommit(), "on")
    }

    // MARK: Two daemons, one database

    /// Runs a unit on `store` and waits for its committed result.
    func write<T: Sendable>(on store: any AccountStore, _ unit: @escaping @Sendable (any AccountTransaction) throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = Box<Result<T, StoreError>>()
        store.write(unit) { box.value = $0; done.signal() }
        done.wait()
        return try box.value!.get()
    }

    func testOneCodeRacedThroughTwoStoresIsAcceptedOnce() throws {
        let second = try PostgresAccountStore(settings: database!.settings)
        defer { second.close() }
        let rules = rules()
        let time: Int64 = 1_800_000_000
        let secret = try enroll(rules, "alice", at: time)
        let code = Array(TOTP(secret: secret, parameters: .standard).code(at: time + 30).utf8)
        let stores: [any AccountStore] = [store!, second]
        let statuses = Box<[Status]>()
        statuses.value = []
        let lock = NSLock()
        let done = DispatchGroup()
        for index in 0..<60 {
            done.enter()
            stores[index % 2].write({ try rules.verify($0, user: "alice", code: code, at: Moment(now: time + 30, otpTime: time + 30)) }) { result in
                lock.lock(); statuses.value!.append((try? result.get())?.status ?? .internalError); lock.unlock()
                done.leave()
            }
        }
        done.wait()
        XCTAssertEqual(statuses.value!.filter { $0 == .accepted }.count, 1, "\(statuses.value!)")
        // Replays count as failures, so the account soon locks: every other answer is a refusal.
        XCTAssertEqual(Set(statuses.value!), [.accepted, .codeReused, .lockedOut], "\(statuses.value!)")
    }

    func testRecoveryCodeLockoutAndDriftAreShared() throws {
        let second = try PostgresAccountStore(settings: database!.settings)
        defer { second.close() }
        let rules = rules { $0.maxFailures = 3 }
        let time: Int64 = 1_800_000_000
        let start = try write { try rules.enrollBegin($0, user: "bob", issuer: nil, at: Moment(now: time, otpTime: time)) }
        let totp = TOTP(secret: try XCTUnwrap(start.value?.secret), parameters: .standard)
        let confirmed = try write(on: second) {
            try rules.enrollConfirm($0, user: "bob", code: Array(totp.code(at: time).utf8), at: Moment(now: time, otpTime: time))
        }
        let recovery = try XCTUnwrap(confirmed.value?.first)
        let moment = Moment(now: time + 100, otpTime: time + 100)
        // A recovery code spent through one store is spent for the other.
        XCTAssertEqual(try write { try rules.verify($0, user: "bob", code: Array(recovery.utf8), at: moment) }.status, .accepted)
        XCTAssertEqual(try write(on: second) { try rules.verify($0, user: "bob", code: Array(recovery.utf8), at: moment) }.status,
                       .codeReused)
        // Drift learned through one store widens the window of the other.
        let fast = Array(totp.code(at: time + 200 + 30).utf8)
        let later = Moment(now: time + 200, otpTime: time + 200)
        XCTAssertEqual(try write(on: second) { try rules.verify($0, user: "bob", code: fast, at: later) }.status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "bob")?.driftSteps }, 1)
        // Failures counted on both add up to one lockout, seen by both.
        let wrong = Array("000000".utf8)
        _ = try write { try rules.verify($0, user: "bob", code: wrong, at: later) }
        _ = try write(on: second) { try rules.verify($0, user: "bob", code: wrong, at: later) }
        let third = try write { try rules.verify($0, user: "bob", code: wrong, at: later) }
        XCTAssertNotNil(third.lockoutStarted)
        let good = Array(totp.code(at: time + 260).utf8)
        XCTAssertEqual(try write(on: second) { try rules.verify($0, user: "bob", code: good, at: later) }.status, .lockedOut)
    }

    func testCrossedLocksOfTwoDaemonsDeadlockAndBothStillCommit() throws {
        let second = try PostgresAccountStore(settings: database!.settings)
        defer { second.close() }
        try write { try $0.save(AccountRecord(name: "alice")); try $0.save(AccountRecord(name: "bob")) }
        // Each store locks one account, waits until the other has locked the other account, then
        // wants it too: the server finds the deadlock and aborts one; that batch runs again.
        let locked = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
        let firstRun = Box<[Bool]>()
        firstRun.value = [true, true]
        let lock = NSLock()
        let results = Box<[Bool]>()
        results.value = []
        let done = DispatchGroup()
        for (index, target) in [(0, store! as any AccountStore), (1, second as any AccountStore)] {
            let (mine, theirs) = index == 0 ? ("alice", "bob") : ("bob", "alice")
            done.enter()
            target.write({ transaction in
                // Not XCTUnwrap: a deadlock error thrown here is the expected part, not a failure.
                guard var account = try transaction.account(named: mine) else { throw StoreError("no \(mine)") }
                account.failures += 1
                try transaction.save(account)
                lock.lock(); let first = firstRun.value![index]; firstRun.value![index] = false; lock.unlock()
                if first {
                    locked[index].signal()
                    _ = locked[1 - index].wait(timeout: .now() + 3)
                }
                guard var other = try transaction.account(named: theirs) else { throw StoreError("no \(theirs)") }
                other.failures += 1
                try transaction.save(other)
            }) { result in
                lock.lock(); results.value!.append((try? result.get()) != nil); lock.unlock()
                done.leave()
            }
        }
        done.wait()
        XCTAssertEqual(results.value!, [true, true], "both committed, one after running again")
        XCTAssertEqual(try write { try $0.allAccounts().map(\.failures) }, [2, 2])
        let retries = (store as! PostgresAccountStore).statistics.conflictRetries + second.statistics.conflictRetries
        XCTAssertGreaterThanOrEqual(retries, 1)
    }

    func testDaemonsStartingAtOnceCreateTheSchemaOnce() throws {
        // A database of its own, never opened yet (setUp's store already created the schema).
        let fresh = try PostgresTestDatabase()
        defer { fresh.drop() }
        let opened = Box<[Result<PostgresAccountStore, StoreError>]>()
        opened.value = []
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            let result: Result<PostgresAccountStore, StoreError>
            do throws(StoreError) { result = .success(try PostgresAccountStore(settings: fresh.settings)) } catch { result = .failure(error) }
            lock.lock(); opened.value!.append(result); lock.unlock()
        }
        var stores: [PostgresAccountStore] = []
        for result in opened.value! { stores.append(try result.get()) }
        defer { stores.forEach { $0.close() } }
        try write(on: stores[0]) { try $0.save(AccountRecord(name: "x")) }
        XCTAssertEqual(try write(on: stores[5]) { try $0.allAccounts().map(\.name) }, ["x"])
    }

    func testHealthAndReconnectAfterTheServerEndsTheSession() throws {
        let store = try XCTUnwrap(store as? PostgresAccountStore)
        try write { try $0.save(AccountRecord(name: "h")) }
        let before = store.health
        XCTAssertTrue(before.connected)
        XCTAssertGreaterThanOrEqual(before.connections, 1)
        // The server ends the writer's idle session: the next unit opens a new one by itself.
        try PostgresAccountStore.runStatements(database!.admin, [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database!.settings.database)' AND application_name = 'twofactord'",
        ])
        usleep(300_000)
        XCTAssertEqual(try write { try $0.account(named: "h")?.name }, "h")
        XCTAssertTrue(store.health.connected)
        XCTAssertEqual(store.health.connections, before.connections + 1)
    }

    func testUnreachableServerFailsWithinTheTimeout() throws {
        var settings = database!.settings
        settings.host = "127.0.0.1"
        settings.port = 1  // nothing listens there
        settings.timeout = 1
        let started = Date()
        XCTAssertThrowsError(try PostgresAccountStore(settings: settings))
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "a generous bound: refused, not hung")
    }
}

final class PostgresSettingsTests: XCTestCase {
    func testURL() throws {
        let settings = try PostgresSettings(url: "postgresql://tf@db.example:6543/accounts?sslmode=verify-full&sslrootcert=/etc/ca.pem&passfile=/etc/pw&connect_timeout=1.5")
        XCTAssertEqual(settings.user, "tf")
        XCTAssertEqual(settings.host, "db.example")
        XCTAssertEqual(settings.port, 6543)
        XCTAssertEqual(settings.database, "accounts")
        XCTAssertEqual(settings.tlsMode, .verifyFull)
        XCTAssertEqual(settings.caFile, "/etc/ca.pem")
        XCTAssertEqual(settings.passwordFile, "/etc/pw")
        XCTAssertEqual(settings.timeout, 1.5)
        XCTAssertEqual(settings.displayName, "postgresql://tf@db.example:6543/accounts?sslmode=verify-full")
    }

    func testAPasswordInTheURLIsRefusedAndNotRepeated() {
        XCTAssertThrowsError(try PostgresSettings(url: "postgresql://tf:hunter2@db/accounts")) { error in
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
        }
        XCTAssertThrowsError(try PostgresSettings(url: "mysql://tf:hunter2@db/accounts")) { error in
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
        }
    }

    func testConfigKeysAndTheirChecks() throws {
        let config = try ConfigParser.parse("""
            store = postgresql
            postgres_host = db.example
            postgres_port = 6543
            postgres_database = accounts
            postgres_user = tf
            postgres_password_file = /etc/twofactor/pg.password
            postgres_sslmode = verify-ca
            postgres_ca_file = /etc/twofactor/ca.pem
            postgres_timeout = 1.5
            """, file: "t.conf")
        XCTAssertEqual(config.store, .postgresql)
        XCTAssertEqual(config.postgres.port, 6543)
        XCTAssertEqual(config.postgres.tlsMode, .verifyCA)
        XCTAssertEqual(config.postgres.passwordFile, "/etc/twofactor/pg.password")
        XCTAssertEqual(config.storeName, "postgresql://tf@db.example:6543/accounts?sslmode=verify-ca")
        XCTAssertThrowsError(try ConfigParser.parse("store = postgresql\npostgres_cert_file = /c.pem\n", file: "t.conf")) { error in
            XCTAssertEqual((error as? ConfigError)?.line, 1, "\(error)")
        }
        XCTAssertThrowsError(try ConfigParser.parse("postgres_password_file = relative\n", file: "t.conf"))
        XCTAssertThrowsError(try ConfigParser.parse("postgres_sslmode = prefer\n", file: "t.conf"))
        XCTAssertEqual(try ConfigParser.parse("", file: "t.conf").store, .sqlite, "SQLite stays the default")
    }

    func testThePasswordFileMustBePrivate() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/password"
        try "s3cret\n".write(toFile: path, atomically: true, encoding: .utf8)
        var settings = PostgresSettings()
        settings.passwordFile = path
        chmod(path, 0o644)
        XCTAssertThrowsError(try settings.readPassword()) { error in
            XCTAssertTrue("\(error)".contains("chmod 600"), "\(error)")
            XCTAssertFalse("\(error)".contains("s3cret"))
        }
        chmod(path, 0o600)
        XCTAssertEqual(try settings.readPassword(), "s3cret")
    }
}
