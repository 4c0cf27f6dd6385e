// The daemon's parts on their own: a real SQLite store in a temporary directory, the account rules
// with a controlled clock, the config parser and the audit sanitiser.
import Foundation
import GRDB
import Logging
import TwoFactorCore
import TwoFactorWire
import XCTest
@testable import TwoFactorDaemon

/// The store contract and the account rules on it. This class runs them on SQLite;
/// PostgresStoreAndRulesTests (PostgresStoreTests.swift) runs every one of them on PostgreSQL.
class StoreAndRulesTests: XCTestCase {
    var directory = ""
    var store: (any TestableStore)!

    /// The store under test, fresh and empty.
    func makeStore() throws -> any TestableStore {
        try SQLiteAccountStore(path: directory + "/twofactor.db")
    }

    override func setUpWithError() throws {
        directory = try DaemonProcess.makeTemporaryDirectory()
        store = try makeStore()
    }

    override func tearDown() {
        store?.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs a unit of work and waits for its durable result.
    func write<T: Sendable>(_ unit: @escaping @Sendable (any AccountTransaction) throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = Box<Result<T, StoreError>>()
        store.write(unit) { box.value = $0; done.signal() }
        done.wait()
        return try box.value!.get()
    }

    func rules(_ change: (inout DaemonConfig) -> Void = { _ in }) -> AccountRules {
        var config = DaemonConfig()
        config.issuer = "test"
        change(&config)
        return AccountRules(policy: AccountPolicy(config: config), keys: DerivedKeys(master: [UInt8](repeating: 7, count: 32)))
    }

    func enroll(_ rules: AccountRules, _ user: String, at time: Int64) throws -> [UInt8] {
        let start = try write { try rules.enrollBegin($0, user: user, issuer: nil, at: Moment(now: time, otpTime: time)) }
        let secret = try XCTUnwrap(start.value?.secret)
        let code = Array(TOTP(secret: secret, parameters: .standard).code(at: time).utf8)
        let confirmed = try write { try rules.enrollConfirm($0, user: user, code: code, at: Moment(now: time, otpTime: time)) }
        XCTAssertEqual(confirmed.status, .ok)
        return secret
    }

    /// Schema v2 (HOTP, per-account window) on a store written by v1: its accounts stay TOTP with
    /// the configured window, and the new state round-trips.
    func testSchemaV2UpgradesAVersion1Store() throws {
        let path = directory + "/v1.db"
        let queue = try DatabaseQueue(path: path)
        try SQLiteAccountStore.migrator.migrate(queue, upTo: "v1: accounts and recovery codes")
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO account (name, secret, algorithm, digits, period, enrolled_at, last_step)
                VALUES ('old', x'0102', 'SHA1', 6, 30, 1, 5)
                """)
        }
        try queue.close()
        let upgraded = try SQLiteAccountStore(path: path)
        defer { upgraded.close() }
        func write<T: Sendable>(_ unit: @escaping @Sendable (any AccountTransaction) throws -> T) throws -> T {
            let done = DispatchSemaphore(value: 0)
            let box = Box<Result<T, StoreError>>()
            upgraded.write(unit) { box.value = $0; done.signal() }
            done.wait()
            return try box.value!.get()
        }
        let old = try XCTUnwrap(try write { try $0.account(named: "old") })
        XCTAssertEqual(old.enrollment?.kind, "totp")
        XCTAssertEqual(old.lastStep, 5)
        XCTAssertNil(old.window)
        XCTAssertNil(old.hotpCounter)
        var changed = old
        changed.enrollment?.kind = "hotp"
        changed.hotpCounter = 42
        changed.hotpResyncCounter = 99
        changed.window = 3
        try write { [changed] in try $0.save(changed) }
        XCTAssertEqual(try write { try $0.account(named: "old") }, changed)
    }

    /// HOTP verification inside the store's units: look-ahead, replay, RFC 4226 7.4 resync (only
    /// two consecutive codes; anything in between ends it; off with hotp_resync_window = 0).
    func testHOTPLookAheadReplayAndResync() throws {
        let secret = Array("12345678901234567890".utf8)
        let time: Int64 = 1_800_000_000
        func verify(_ rules: AccountRules, _ counter: UInt64) throws -> VerifyOutcome {
            let code = Array(HOTP.code(secret: secret, counter: counter, algorithm: .sha1, digits: 6).utf8)
            return try write { try rules.verify($0, user: "token", code: code, at: Moment(now: time, otpTime: time)) }
        }
        let rules = rules { $0.hotpLookAhead = 3; $0.hotpResyncWindow = 20; $0.maxFailures = 100 }
        let enrolled = try write {
            try rules.adminEnroll($0, user: "token", AdminEnrollment(secret: secret, kind: .hotp, parameters: .standard, counter: 10),
                                  at: Moment(now: time, otpTime: time))
        }
        XCTAssertEqual(enrolled.value?.newRecoveryCodes.count, 8)
        XCTAssertEqual(try verify(rules, 9).status, .codeReused)
        XCTAssertEqual(try verify(rules, 13).status, .accepted)         // 10 + 3
        XCTAssertEqual(try write { try $0.account(named: "token")?.hotpCounter }, 14)
        XCTAssertEqual(try verify(rules, 13).status, .codeReused)
        XCTAssertEqual(try verify(rules, 18).reason, .resyncPending)    // beyond 14...17
        XCTAssertEqual(try verify(rules, 25).reason, .resyncPending)    // a new first code
        XCTAssertEqual(try verify(rules, 19).status, .wrongCode)        // 18 was forgotten
        XCTAssertEqual(try verify(rules, 26).status, .wrongCode)        // and so was 25
        XCTAssertEqual(try verify(rules, 30).reason, .resyncPending)
        XCTAssertEqual(try verify(rules, 31).status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "token")?.hotpCounter }, 32)
        XCTAssertEqual(try verify(rules, 60).reason, .wrongCode)        // beyond 32 + 20
        let noResync = self.rules { $0.hotpLookAhead = 3; $0.hotpResyncWindow = 0; $0.maxFailures = 100 }
        XCTAssertEqual(try verify(noResync, 40).reason, .wrongCode)
        XCTAssertEqual(try verify(noResync, 41).status, .wrongCode)
        XCTAssertEqual(try verify(noResync, 33).status, .accepted)
    }

    func testSynchronousIsFullAndJournalIsWAL() throws {
        let store = try XCTUnwrap(store as? SQLiteAccountStore, "an SQLite property")
        XCTAssertEqual(try store.synchronousSetting(), 2)
        let journal = try String(contentsOfFile: directory + "/twofactor.db", encoding: .isoLatin1)
        XCTAssertTrue(journal.hasPrefix("SQLite format 3"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/twofactor.db-wal"))
    }

    func testConcurrentUnitsAreGroupCommittedInOrder() throws {
        let units = 200
        let done = DispatchGroup()
        let results = Box<[Int]>()
        results.value = []
        let lock = NSLock()
        let store = self.store!
        DispatchQueue.concurrentPerform(iterations: units) { index in
            done.enter()
            store.write({ transaction -> Int in
                // Each unit reads what the previous ones wrote in the same transaction.
                var account = try transaction.account(named: "counter") ?? AccountRecord(name: "counter")
                account.failures += 1
                try transaction.save(account)
                return account.failures
            }) { result in
                lock.lock(); results.value!.append((try? result.get()) ?? -1); lock.unlock()
                done.leave()
            }
        }
        done.wait()
        XCTAssertEqual(Set(results.value!), Set(1...units), "every unit saw all earlier writes")
        let stats = store.statistics
        XCTAssertEqual(stats.units, units)
        XCTAssertLessThan(stats.transactions, units, "some units shared a commit: \(stats)")
        XCTAssertGreaterThan(stats.largestBatch, 1)
    }

    /// `check` is answered on the event loop through readNow: it must see every write whose
    /// completion has run (an enrollment the person was just told about), also at once after a
    /// disable, and step aside (nil) once the store is closed.
    func testReadNowSeesEveryCompletedWriteAndStopsAtClose() throws {
        // Only SQLite reads without waiting; a networked store always answers nil (the default),
        // and `check` takes the `read` path.
        guard store is SQLiteAccountStore else {
            XCTAssertNil(store.readNow { _ in true })
            throw XCTSkip("readNow is SQLite's; this store always answers nil")
        }
        let rules = self.rules()
        XCTAssertEqual(store.readNow { try rules.isEnrolled($0, user: "alice") }, false)
        _ = try enroll(rules, "alice", at: 1_700_000_000)
        XCTAssertEqual(store.readNow { try rules.isEnrolled($0, user: "alice") }, true)
        let removed = try write { try rules.reset($0, user: "alice") }
        XCTAssertEqual(removed.status, .ok)
        XCTAssertEqual(store.readNow { try rules.isEnrolled($0, user: "alice") }, false)
        // Every field comes back as saved (record reads the columns by position).
        var saved = AccountRecord(name: "bob")
        saved.enrollment = EnrollmentRecord(sealedSecret: [1, 2, 3], algorithm: "SHA256", digits: 8, period: 60, createdAt: 11)
        saved.pending = EnrollmentRecord(sealedSecret: [4, 5], algorithm: "SHA512", digits: 7, period: 45, createdAt: 12)
        saved.lastStep = 13
        saved.lastUsedAt = 14
        saved.failures = 15
        saved.lockedUntil = 16
        saved.lockouts = 17
        saved.driftSteps = -18
        let copy = saved
        try write { try $0.save(copy) }
        XCTAssertEqual(store.readNow { try $0.account(named: "bob") }, saved)
        store.close()
        XCTAssertNil(store.readNow { try rules.isEnrolled($0, user: "alice") })
    }

    /// loginState is account(named:)'s enrollment and grace logins, read narrowly: the same
    /// answer for an unknown account, a pending enrollment, an enrollment and counted grace logins,
    /// through the writer and through the immediate readers.
    func testLoginStateAgreesWithTheWholeRow() throws {
        var pendingOnly = AccountRecord(name: "pat")
        pendingOnly.pending = EnrollmentRecord(sealedSecret: [4, 5], algorithm: "SHA1", digits: 6, period: 30, createdAt: 1)
        pendingOnly.graceLoginsUsed = 2
        var enrolled = AccountRecord(name: "eve")
        enrolled.enrollment = EnrollmentRecord(sealedSecret: [1, 2], algorithm: "SHA1", digits: 6, period: 30, createdAt: 1)
        enrolled.graceLoginsUsed = 3
        let records = [pendingOnly, enrolled]
        try write { transaction in for record in records { try transaction.save(record) } }
        for name in ["nobody", "pat", "eve"] {
            let whole = try write { try $0.account(named: name) }
            let expected = LoginState(enrolled: whole?.enrollment != nil, graceLoginsUsed: whole?.graceLoginsUsed ?? 0)
            XCTAssertEqual(try write { try $0.loginState(of: name) }, expected, name)
            if store is SQLiteAccountStore { XCTAssertEqual(store.readNow { try $0.loginState(of: name) }, expected, name) }
        }
        XCTAssertEqual(try write { try $0.loginState(of: "eve") }, LoginState(enrolled: true, graceLoginsUsed: 3))
        XCTAssertEqual(try write { try $0.loginState(of: "pat") }, LoginState(enrolled: false, graceLoginsUsed: 2))
    }

    /// The immediate readers open the file read-only: a unit that tries to write through
    /// readNow fails (nil, so `check` would take the `read` path) and nothing is written.
    func testReadNowCannotWrite() throws {
        guard store is SQLiteAccountStore else { throw XCTSkip("readNow is SQLite's") }
        var intruder = AccountRecord(name: "mallory")
        intruder.enrollment = EnrollmentRecord(sealedSecret: [1], algorithm: "SHA1", digits: 6, period: 30, createdAt: 1)
        let record = intruder
        XCTAssertNil(store.readNow { try $0.save(record) })
        XCTAssertNil(store.readNow { try $0.replaceRecoveryCodes(of: "mallory", hashes: [[1, 2, 3]]) })
        XCTAssertEqual(store.readNow { try $0.account(named: "mallory") }, .some(nil))
        XCTAssertEqual(store.readNow { try $0.recoveryCodes(of: "mallory").count }, 0)
    }

    func testFailedCommitFailsEveryUnitOfTheBatch() throws {
        let release = holdWriter()
        store.failingCommitsForTesting = 1
        let done = DispatchGroup()
        let lock = NSLock()
        let outcomes = Box<[Bool]>()
        outcomes.value = []
        for index in 0..<10 {
            done.enter()
            store.write({ transaction in
                try transaction.save(AccountRecord(name: "user\(index)"))
            }) { result in
                lock.lock(); outcomes.value!.append((try? result.get()) != nil); lock.unlock()
                done.leave()
            }
        }
        release()
        done.wait()
        XCTAssertEqual(outcomes.value!, [Bool](repeating: false, count: 10), "nothing may be reported as done")
        XCTAssertEqual(store.statistics.failedTransactions, 1)
        XCTAssertEqual(try write { try $0.allAccounts().count }, 0, "and nothing was stored")
        // The store keeps working afterwards.
        try write { try $0.save(AccountRecord(name: "after")) }
        XCTAssertEqual(try write { try $0.allAccounts().map(\.name) }, ["after"])
    }

    /// Holds the store's writer in a unit that waits until `release` is called, so that the units
    /// written meanwhile queue up into one batch. The unit is written from another thread: a
    /// store may run a lone unit on its caller's thread. `release` returns once that unit is done.
    private func holdWriter() -> () -> Void {
        let gate = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let store = self.store!
        DispatchQueue.global().async {
            store.write({ _ in entered.signal(); gate.wait() }) { _ in finished.signal() }
        }
        entered.wait()
        return { gate.signal(); finished.wait() }
    }

    /// One page of admin list: names in byte order (as the CLI pages with listAfter), from after
    /// the given name, at most `limit`.
    func testAccountPagesFollowByteOrder() throws {
        let names = ["b", "a", "B", "\u{e9}", "e\u{301}", "aa"]
        for name in names { try write { try $0.save(AccountRecord(name: name)) } }
        let byteOrder = names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        XCTAssertEqual(try write { try $0.accounts(after: nil, limit: 100).map(\.name) }, byteOrder)
        XCTAssertEqual(try write { try $0.accounts(after: nil, limit: 2).map(\.name) }, Array(byteOrder.prefix(2)))
        XCTAssertEqual(try write { try $0.accounts(after: byteOrder[1], limit: 3).map(\.name) }, Array(byteOrder[2..<5]))
        XCTAssertEqual(try write { try $0.accounts(after: byteOrder.last!, limit: 3).map(\.name) }, [])
    }

    func testFailingUnitDoesNotSpoilItsBatch() throws {
        struct Boom: Error {}
        let done = DispatchGroup()
        let lock = NSLock()
        let outcomes = Box<[String: Bool]>()
        outcomes.value = [:]
        let release = holdWriter()
        for name in ["a", "b", "c"] {
            done.enter()
            store.write({ transaction in
                try transaction.save(AccountRecord(name: name))
                if name == "b" { throw Boom() }
            }) { result in
                lock.lock(); outcomes.value![name] = (try? result.get()) != nil; lock.unlock()
                done.leave()
            }
        }
        release()
        done.wait()
        XCTAssertEqual(outcomes.value!, ["a": true, "b": false, "c": true])
        XCTAssertEqual(store.statistics.largestBatch, 3, "the three units shared one transaction")
        XCTAssertEqual(try write { try $0.allAccounts().map(\.name) }, ["a", "c"], "b's savepoint was rolled back")
    }

    func testInternalErrorAnswerWhenTheStoreFails() throws {
        let rules = rules()
        _ = try enroll(rules, "alice", at: 1_800_000_000)
        let processor = RequestProcessor(store: store, rules: rules,
                                         clock: ClockMonitor(configuration: .testing(servers: []), logger: .init(label: "test"), audit: nil),
                                         audit: AuditLog(target: .stderr))
        store.failingCommitsForTesting = 1
        var request = WireMessage(operation: .verify)
        try request.append(.user, string: "alice")
        try request.append(.code, string: "000000")
        let done = DispatchSemaphore(value: 0)
        let answer = Box<WireMessage>()
        processor.handle(request, caller: Caller(uid: 0, gid: 0, pid: 1, name: "root", isAdmin: true)) {
            answer.value = $0; done.signal()
        }
        done.wait()
        XCTAssertEqual(answer.value?.status, .internalError)
        XCTAssertEqual(try write { try $0.account(named: "alice")?.failures }, 0, "the failure was not recorded either")
    }

    func testLockoutDoublesUpToTheCapAndSuccessResets() throws {
        let rules = rules { $0.maxFailures = 3; $0.lockoutSeconds = 300; $0.lockoutMaxSeconds = 1000 }
        var time: Int64 = 1_800_000_000
        let secret = try enroll(rules, "alice", at: time)
        func verify(_ code: String) throws -> VerifyOutcome {
            let now = time
            return try write { try rules.verify($0, user: "alice", code: Array(code.utf8), at: Moment(now: now, otpTime: now)) }
        }
        var durations: [Int64] = []
        for _ in 0..<4 {
            for attempt in 1...3 {
                let outcome = try verify("000000")
                XCTAssertEqual(outcome.status, .wrongCode)
                XCTAssertEqual(outcome.lockoutStarted != nil, attempt == 3)
                if let lockout = outcome.lockoutStarted { durations.append(lockout.until - time) }
            }
            let good = TOTP(secret: secret, parameters: .standard).code(at: time + 30)
            XCTAssertEqual(try verify(good).status, .lockedOut, "not even checked")
            time += durations.last! - 1
            XCTAssertEqual(try verify("000000").status, .lockedOut)
            time += 1
        }
        XCTAssertEqual(durations, [300, 600, 1000, 1000])
        // After the lockout: a success resets the doubling.
        time += 60
        let good = TOTP(secret: secret, parameters: .standard).code(at: time)
        XCTAssertEqual(try verify(good).status, .accepted)
        for _ in 1...3 { _ = try verify("000000") }
        XCTAssertEqual(try write { try $0.account(named: "alice")!.lockedUntil }, time + 300)
    }

    func testDriftLearningCentresTheWindow() throws {
        let learning = rules { $0.driftLearning = true; $0.driftMaxSteps = 2 }
        var time: Int64 = 1_800_000_000
        let secret = try enroll(learning, "alice", at: time)
        let totp = TOTP(secret: secret, parameters: .standard)
        func verify(_ rules: AccountRules, codeAt offsetSteps: Int64) throws -> VerifyOutcome {
            let now = time
            let code = Array(totp.code(at: now + 30 * offsetSteps).utf8)
            return try write { try rules.verify($0, user: "alice", code: code, at: Moment(now: now, otpTime: now)) }
        }
        // The phone runs one step fast: accepted within the window, drift learned.
        time += 300
        XCTAssertEqual(try verify(learning, codeAt: 1).status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "alice")!.driftSteps }, 1)
        // Now two steps fast: outside a window of 1 around 0, inside one around the learned +1.
        time += 300
        XCTAssertEqual(try verify(learning, codeAt: 2).status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "alice")!.driftSteps }, 2)
        // Three steps fast: centred on +2, accepted; but the learned drift stays bounded at 2.
        time += 300
        XCTAssertEqual(try verify(learning, codeAt: 3).status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "alice")!.driftSteps }, 2)

        // drift_learning = no: always centred on 0, so two steps fast is refused.
        let fixed = rules { $0.driftLearning = false }
        time += 300
        XCTAssertEqual(try verify(fixed, codeAt: 2).status, .wrongCode)
        XCTAssertEqual(try verify(fixed, codeAt: 1).status, .accepted)
    }

    /// Two steps of the window can share a code (1 in 10^6 for each pair). A code that is also the
    /// code of the step already used counts for the step not used yet, as the code of that step:
    /// refusing it as a replay turned away a right code (bench/run's load test met one in 100,000).
    func testACodeSharedByAUsedAndAnUnusedStepIsAcceptedForTheUnusedOne() throws {
        // Found by search: with this key, steps 59,321,472 and 59,321,473 both have the code 416594
        // (`oathtool --totp 000102030405060708090a0b0c0d0e0f10111213 -N @1779644160`, and @1779644190).
        let secret = [UInt8](0..<20)
        let used: Int64 = 59_321_472
        let time = used * 30
        let totp = TOTP(secret: secret, parameters: .standard)
        XCTAssertEqual(totp.code(at: time), "416594")
        XCTAssertEqual(totp.code(at: time + 30), "416594")
        let rules = self.rules()
        let enrolled = try write {
            try rules.adminEnroll($0, user: "alice", AdminEnrollment(secret: secret, kind: .totp, parameters: .standard, lastStep: used),
                                  at: Moment(now: time, otpTime: time))
        }
        XCTAssertEqual(enrolled.status, .ok)
        let code = Array("416594".utf8)
        func verify() throws -> VerifyOutcome {
            try write { try rules.verify($0, user: "alice", code: code, at: Moment(now: time, otpTime: time)) }
        }
        XCTAssertEqual(try verify().status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "alice")!.lastStep }, used + 1)
        // Both steps are used now: the same code again is a replay.
        XCTAssertEqual(try verify().status, .codeReused)
    }

    /// Learns drift -2 the way a wrong clock teaches it (window 1: -1 first, then -2); returns the
    /// TOTP, the recovery codes and the time reached.
    func learnDriftMinusTwo(_ rules: AccountRules, _ user: String) throws -> (TOTP, [String], Int64) {
        let enrolledAt: Int64 = 1_800_000_000
        let start = try write { try rules.enrollBegin($0, user: user, issuer: nil, at: Moment(now: enrolledAt, otpTime: enrolledAt)) }
        let totp = TOTP(secret: try XCTUnwrap(start.value?.secret), parameters: .standard)
        let confirmed = try write {
            try rules.enrollConfirm($0, user: user, code: Array(totp.code(at: enrolledAt).utf8),
                                    at: Moment(now: enrolledAt, otpTime: enrolledAt))
        }
        var time = enrolledAt
        for (steps, expected) in [(Int64(-1), Int64(-1)), (-2, -2)] {
            time += 300
            let now = time
            let code = Array(totp.code(at: now + 30 * steps).utf8)
            XCTAssertEqual(try write { try rules.verify($0, user: user, code: code, at: Moment(now: now, otpTime: now)) }.status,
                           .accepted)
            XCTAssertEqual(try write { try $0.account(named: user)!.driftSteps }, expected)
        }
        return (totp, try XCTUnwrap(confirmed.value), time)
    }

    func testLearnedDriftOnlyWidensTheAcceptedSteps() throws {
        let rules = rules { $0.window = 1; $0.driftLearning = true; $0.driftMaxSteps = 2 }
        let (totp, _, learnedAt) = try learnDriftMinusTwo(rules, "alice")
        var time = learnedAt
        func verify(codeAt steps: Int64) throws -> VerifyOutcome {
            let now = time
            let code = Array(totp.code(at: now + 30 * steps).utf8)
            return try write { try rules.verify($0, user: "alice", code: code, at: Moment(now: now, otpTime: now)) }
        }
        // Drift -2 widens the window downwards: now-3 is accepted ...
        time += 300
        XCTAssertEqual(try verify(codeAt: -3).status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "alice")!.driftSteps }, -2, "bounded by drift_max_steps")
        // ... and the code the phone shows now still is (it used to be refused: now-3...now-1 only).
        time += 300
        XCTAssertEqual(try verify(codeAt: 0).status, .accepted)
        XCTAssertEqual(try write { try $0.account(named: "alice")!.driftSteps }, 0)
        time += 300
        XCTAssertEqual(try verify(codeAt: 1).status, .accepted)
        XCTAssertEqual(try verify(codeAt: 1).status, .codeReused, "still single-use")
    }

    func testRecoveryCodeLoginUnlockAndResetClearLearnedDrift() throws {
        let rules = rules { $0.window = 1; $0.driftLearning = true; $0.driftMaxSteps = 2 }
        let (_, recoveryCodes, time) = try learnDriftMinusTwo(rules, "alice")
        let moment = Moment(now: time + 10, otpTime: time + 10)
        let recovery = try write { try rules.verify($0, user: "alice", code: Array(recoveryCodes[0].utf8), at: moment) }
        XCTAssertEqual(recovery.status, .accepted)
        XCTAssertEqual(recovery.method, .recoveryCode)
        XCTAssertEqual(try write { try rules.status($0, user: "alice", at: moment) }.driftSteps, 0)

        _ = try learnDriftMinusTwo(rules, "bob")
        XCTAssertEqual(try write { try rules.unlock($0, user: "bob") }.status, .ok)
        XCTAssertEqual(try write { try rules.status($0, user: "bob", at: moment) }.driftSteps, 0)

        _ = try learnDriftMinusTwo(rules, "carol")
        XCTAssertEqual(try write { try rules.reset($0, user: "carol") }.status, .ok)
        XCTAssertNil(try write { try $0.account(named: "carol") })
    }

    func testCanonicallyEquivalentNamesAreDifferentAccounts() throws {
        let rules = rules()
        _ = try enroll(rules, "jos\u{E9}", at: 1_800_000_000)
        XCTAssertNil(try write { try $0.account(named: "jose\u{301}") })
        XCTAssertFalse(try write { try rules.isEnrolled($0, user: "jose\u{301}") })
        XCTAssertTrue(try write { try rules.isEnrolled($0, user: "jos\u{E9}") })
    }

    func testSecretsAreSealedAndBoundToTheAccount() throws {
        let rules = rules()
        _ = try enroll(rules, "alice", at: 1_800_000_000)
        let record = try XCTUnwrap(try write { try $0.account(named: "alice") })
        let sealed = try XCTUnwrap(record.enrollment?.sealedSecret)
        let keys = DerivedKeys(master: [UInt8](repeating: 7, count: 32))
        XCTAssertEqual(try keys.openSecret(sealed, account: "alice").count, 20)
        XCTAssertThrowsError(try keys.openSecret(sealed, account: "mallory"), "AAD binds the secret to its account")
        XCTAssertThrowsError(try DerivedKeys(master: [UInt8](repeating: 8, count: 32)).openSecret(sealed, account: "alice"))
        XCTAssertNotEqual(keys.secretEncryption, keys.recoveryHashing)
    }
}

final class CallerTests: XCTestCase {
    let composed = "jos\u{E9}"        // é as one scalar
    let decomposed = "jose\u{301}"    // e + combining acute accent: another user for useradd

    func testNamesAreComparedAsBytesNotAsCanonicallyEquivalentStrings() {
        XCTAssertEqual(composed, decomposed, "Swift's == is canonical equivalence: the reason for AccountName")
        XCTAssertFalse(AccountName.same(composed, decomposed))
        XCTAssertTrue(AccountName.same(composed, "jos\u{E9}"))
        let lookAlike = Caller(uid: 1001, gid: 1001, pid: 1, name: decomposed, isAdmin: false)
        XCTAssertFalse(lookAlike.owns(composed))
        XCTAssertFalse(lookAlike.mayVerify(composed))
        XCTAssertFalse(lookAlike.mayManage(composed))
        XCTAssertTrue(lookAlike.mayManage(decomposed))
    }

    func testAdminPowersAreForOtherPeoplesAccounts() {
        let admin = Caller(uid: 1001, gid: 1001, pid: 1, name: "alice", isAdmin: true)
        XCTAssertTrue(admin.mayAdminister("bob"))
        XCTAssertFalse(admin.mayAdminister("alice"), "on their own account admins give a code like anyone")
        XCTAssertTrue(admin.mayManage("alice"))
        let root = Caller(uid: 0, gid: 0, pid: 1, name: "root", isAdmin: true)
        XCTAssertTrue(root.mayAdminister("alice"))
        XCTAssertFalse(root.mayAdminister("root"), "root's own account is root's own")
        let ordinary = Caller(uid: 1002, gid: 1002, pid: 1, name: "carol", isAdmin: false)
        XCTAssertFalse(ordinary.mayAdminister("bob"))
    }
}

final class ConfigAndAuditTests: XCTestCase {
    func testDefaultsMatchTheContract() throws {
        let config = try ConfigParser.parse("", file: "x.conf")
        XCTAssertEqual(config.socket, "/run/twofactor/twofactord.sock")
        XCTAssertEqual(config.socketMode, 0o666)
        XCTAssertEqual(config.stateDirectory, "/var/lib/twofactor")
        XCTAssertEqual(config.keyFile, "/etc/twofactor/secret.key")
        XCTAssertEqual(config.adminGroup, "twofactor-admin")
        XCTAssertEqual(config.parameters, .standard)
        XCTAssertEqual(config.window, 1)
        XCTAssertEqual(config.maxFailures, 5)
        XCTAssertEqual(config.lockoutSeconds, 300)
        XCTAssertEqual(config.lockoutMaxSeconds, 3600)
        XCTAssertEqual(config.maxConnections, 64)
        XCTAssertEqual(config.readTimeout, 5)
        XCTAssertEqual(config.log, .auto)
        XCTAssertEqual(config.ntpServers.map(\.description), ["time1.google.com", "pool.ntp.org"])
        XCTAssertEqual(config.ntpInterval, 900)
        XCTAssertEqual(config.ntpTimeout, 2)
        XCTAssertEqual(config.ntpSamples, 4)
        XCTAssertEqual(config.clockWarnThreshold, 10)
        XCTAssertTrue(config.clockCompensation)
        XCTAssertEqual(config.clockCompensationMax, 180)
        XCTAssertEqual(config.clockMinSources, 2)
        XCTAssertTrue(config.driftLearning)
        XCTAssertEqual(config.driftMaxSteps, 2)
    }

    func testParsesEveryKey() throws {
        let text = """
            # full example
            socket = /tmp/s.sock
            socket_mode = 0660
            state_directory = /tmp/state
            key_file = /tmp/key
            admin_group = wheel
            issuer = Example Corp   # trailing comment
            algorithm = sha256
            digits = 8
            period = 60
            window = 2
            max_failures = 3
            lockout_seconds = 60
            lockout_max_seconds = 600
            max_connections = 10
            read_timeout = 1.5
            log = syslog
            ntp_servers = 127.0.0.1:12300 ntp.example.org
            ntp_interval = 60
            ntp_timeout = 1
            ntp_samples = 2
            clock_warn_threshold = 5
            clock_compensation = off
            clock_compensation_max = 600
            clock_min_sources = 3
            drift_learning = false
            drift_max_steps = 0
            """
        let config = try ConfigParser.parse(text, file: "x.conf")
        XCTAssertEqual(config.socketMode, 0o660)
        XCTAssertEqual(config.issuer, "Example Corp")
        XCTAssertEqual(config.parameters, try OTPParameters(algorithm: .sha256, digits: 8, period: 60))
        XCTAssertEqual(config.readTimeout, 1.5)
        XCTAssertEqual(config.log, .syslog)
        XCTAssertEqual(config.ntpServers, [NTPServerName(host: "127.0.0.1", port: 12300), NTPServerName(host: "ntp.example.org")])
        XCTAssertFalse(config.clockCompensation)
        XCTAssertEqual(config.clockCompensationMax, 600)
        XCTAssertEqual(config.clockConfiguration.compensationMaxSeconds, 600)
        XCTAssertEqual(config.clockConfiguration.minimumSources, 3)
        XCTAssertFalse(config.driftLearning)
        XCTAssertEqual(config.driftMaxSteps, 0)
        XCTAssertEqual(try ConfigParser.parse("ntp_servers =\n", file: "x").ntpServers, [])
    }

    func testErrorsNameFileAndLine() {
        func error(_ text: String) -> String {
            do { _ = try ConfigParser.parse(text, file: "/etc/t.conf"); return "no error" } catch { return error.description }
        }
        XCTAssertEqual(error("\n\nfoo = 1"), "/etc/t.conf:3: unknown key 'foo'")
        XCTAssertTrue(error("window = 1\nwindow = 2").hasPrefix("/etc/t.conf:2: 'window' is already set on line 1"))
        XCTAssertTrue(error("socket_mode = 999").hasPrefix("/etc/t.conf:1: socket_mode"))
        XCTAssertTrue(error("socket = relative/path").hasPrefix("/etc/t.conf:1: socket must be an absolute path"))
        XCTAssertTrue(error("log = loud").hasPrefix("/etc/t.conf:1: log must be"))
        XCTAssertTrue(error("ntp_servers = bad:host:99999").hasPrefix("/etc/t.conf:1: ntp_servers"))
        XCTAssertTrue(error("lockout_seconds = 600\nlockout_max_seconds = 60").hasPrefix("/etc/t.conf:2:"))
        XCTAssertTrue(error("period = 0").hasPrefix("/etc/t.conf:1:"))
        XCTAssertTrue(error("max_connections = -1").hasPrefix("/etc/t.conf:1:"))
        // One server alone must never be enough to move verification time.
        XCTAssertEqual(error("clock_min_sources = 1"),
                       "/etc/t.conf:1: clock_min_sources must be a whole number from 2 to 16, got '1'")
        XCTAssertTrue(error("clock_min_sources = 17").hasPrefix("/etc/t.conf:1: clock_min_sources"))
    }

    /// What --check-config accepts is what the daemon runs with: the clock monitor no longer
    /// clamps, so the table's ranges are the limits (issue 11).
    func testClockKeysAcceptExactlyWhatTheMonitorUses() throws {
        func error(_ text: String) -> String? {
            do { _ = try ConfigParser.parse(text, file: "t.conf"); return nil } catch { return error.description }
        }
        XCTAssertNil(error("ntp_samples = 16"))
        XCTAssertEqual(error("ntp_samples = 17"), "t.conf:1: ntp_samples must be a whole number from 1 to 16, got '17'")
        XCTAssertNil(error("ntp_timeout = 0.05"))
        XCTAssertEqual(error("ntp_timeout = 0.01"),
                       "t.conf:1: ntp_timeout must be a number of seconds from 0.05 to 60, got '0.01'")
        XCTAssertNil(error("ntp_interval = 1"))
        XCTAssertEqual(error("ntp_interval = 0.5"),
                       "t.conf:1: ntp_interval must be a number of seconds from 1 to 86400, got '0.5'")
        let v6 = try ConfigParser.parse("ntp_servers = [::1]:123 [2001:db8::1]:4123 fe80::1%eth0", file: "t.conf")
        XCTAssertEqual(v6.ntpServers, [NTPServerName(host: "::1"), NTPServerName(host: "2001:db8::1", port: 4123),
                                       NTPServerName(host: "fe80::1%eth0")])
        XCTAssertEqual(v6.clockConfiguration.servers, v6.ntpServers)
        XCTAssertEqual(error("ntp_servers = pool.ntp.org host:0"),
                       "t.conf:1: ntp_servers must be \(try XCTUnwrap(ConfigKeys.named("ntp_servers")).requirement), "
                       + "got 'host:0' (port must be 1 to 65535)")
    }

    /// --print-config prints values the parser reads back as the same configuration.
    func testEffectiveConfigParsesBackToTheSameValues() throws {
        var config = DaemonConfig()
        config.socketMode = 0o640
        config.readTimeout = 1.5
        config.ntpServers = [NTPServerName(host: "::1", port: 4123), NTPServerName(host: "ntp.example.org")]
        config.clockCompensation = false
        config.parameters = try OTPParameters(algorithm: .sha512, digits: 8, period: 60)
        config.log = .stderr
        config.lockoutSeconds = 60
        let text = ConfigKeys.effectiveConfig(config)
        XCTAssertTrue(text.contains("socket_mode = 0640\n"), text)
        XCTAssertTrue(text.contains("ntp_servers = [::1]:4123 ntp.example.org\n"), text)
        XCTAssertEqual(try ConfigParser.parse(text, file: "printed"), config)
        XCTAssertEqual(try ConfigParser.parse(ConfigKeys.effectiveConfig(DaemonConfig()), file: "defaults"), DaemonConfig())
        XCTAssertEqual(Set(ConfigKeys.all.map(\.name)).count, ConfigKeys.all.count, "a key defined twice")
    }

    func testAuditValuesCannotForgeFields() {
        XCTAssertEqual(AuditLog.value("alice"), "alice")
        XCTAssertEqual(AuditLog.value(nil), "-")
        XCTAssertEqual(AuditLog.value(""), "-")
        XCTAssertEqual(AuditLog.value("a b"), "\"a b\"")
        XCTAssertEqual(AuditLog.value("x=y"), "\"x=y\"")
        XCTAssertEqual(AuditLog.value("evil\nverify account=root result=accepted"), "\"evil?verify account=root result=accepted\"")
        XCTAssertEqual(AuditLog.value("q\"uote\\"), "q?uote?")
        XCTAssertEqual(AuditLog.value("é"), "??")
        XCTAssertEqual(AuditLog.value(String(repeating: "a", count: 500)).count, 128)
    }

    func testPolicyLockoutDuration() {
        var config = DaemonConfig()
        config.lockoutSeconds = 300
        config.lockoutMaxSeconds = 3600
        let policy = AccountPolicy(config: config)
        XCTAssertEqual((0..<6).map { policy.lockoutDuration(previousLockouts: $0) }, [300, 600, 1200, 2400, 3600, 3600])
        XCTAssertEqual(policy.lockoutDuration(previousLockouts: 1_000_000), 3600)
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T?
}
