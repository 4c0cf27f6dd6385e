// The pieces of issue 14 around the store, on their own: the key ring and its file, store URLs
// (never a password), and migrate-store between two real SQLite stores.
import Foundation
import TwoFactorCore
import XCTest
@testable import TwoFactorDaemon

final class FleetToolsTests: XCTestCase {
    let old = [UInt8](repeating: 1, count: 32), new = [UInt8](repeating: 2, count: 32)

    func testKeyRingFileLayouts() throws {
        XCTAssertEqual(KeyRing(fileBytes: old), KeyRing(recovery: old, sealing: old, openOnly: nil))
        XCTAssertEqual(KeyRing(fileBytes: old + new), KeyRing(recovery: old, sealing: new, openOnly: nil))
        XCTAssertEqual(KeyRing(fileBytes: old + new + old), KeyRing(recovery: old, sealing: new, openOnly: old))
        XCTAssertNil(KeyRing(fileBytes: old + [9]))
        for ring in [KeyRing(recovery: old, sealing: old, openOnly: nil), KeyRing(recovery: old, sealing: new, openOnly: old)] {
            XCTAssertEqual(KeyRing(fileBytes: ring.fileBytes), ring)
        }
        XCTAssertEqual(KeyRing(recovery: old, sealing: old, openOnly: nil).fileBytes.count, 32)  // as created
    }

    func testTheOpenOnlyKeyOpensButNeverSeals() throws {
        let before = DerivedKeys(master: old)
        let during = DerivedKeys(ring: KeyRing(recovery: old, sealing: new, openOnly: old))
        let after = DerivedKeys(ring: KeyRing(recovery: old, sealing: new, openOnly: nil))
        let sealedOld = try before.sealSecret([7, 7, 7], account: "alice")
        XCTAssertEqual(try during.openSecret(sealedOld, account: "alice"), [7, 7, 7])
        XCTAssertFalse(during.isSealedUnderSealingKey(sealedOld, account: "alice"))
        XCTAssertThrowsError(try after.openSecret(sealedOld, account: "alice"))
        let sealedNew = try during.sealSecret([7, 7, 7], account: "alice")
        XCTAssertTrue(during.isSealedUnderSealingKey(sealedNew, account: "alice"))
        XCTAssertEqual(try after.openSecret(sealedNew, account: "alice"), [7, 7, 7])
        XCTAssertThrowsError(try before.openSecret(sealedNew, account: "alice"))
        // Recovery-code hashes do not change: their key is the ring's first.
        XCTAssertEqual(before.hashRecoveryCode(normalized: "ABCDEFGHJKMN"), after.hashRecoveryCode(normalized: "ABCDEFGHJKMN"))
    }

    func testStoreURLs() throws {
        XCTAssertEqual(try StoreLocation(url: "sqlite:///var/lib/twofactor/twofactor.db"), .sqlite(path: "/var/lib/twofactor/twofactor.db"))
        XCTAssertThrowsError(try StoreLocation(url: "sqlite://relative.db"))
        XCTAssertThrowsError(try StoreLocation(url: "sqlite:///dir/"))
        do {
            _ = try StoreLocation(url: "mysql://bob:hunter2@db/x")
            XCTFail("mysql accepted")
        } catch {
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
        }
        XCTAssertEqual(StoreLocation.redact("postgresql://u:hunter2@h/db?password=x&sslmode=verify-full"),
                       "postgresql://u:***@h/db?password=***&sslmode=verify-full")
    }

    func testMigrationCopiesEverythingAndRefusesAFullTarget() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = try SQLiteAccountStore(path: directory + "/a.db"), target = try SQLiteAccountStore(path: directory + "/b.db")
        defer { source.close(); target.close() }
        try source.writeAndWait { t in
            var alice = AccountRecord(name: "alice")
            alice.enrollment = EnrollmentRecord(sealedSecret: [1, 2, 3], algorithm: "SHA1", digits: 6, period: 30, createdAt: 100)
            alice.lastStep = 55_000_000
            alice.lastUsedAt = 1_700_000_000
            alice.failures = 2
            alice.lockedUntil = 4_000_000_000
            alice.lockouts = 1
            alice.driftSteps = -1
            try t.save(alice)
            try t.replaceRecoveryCodes(of: "alice", hashes: [[9, 9], [8, 8], [7, 7]])
            _ = try t.markRecoveryCodeUsed(of: "alice", hash: [8, 8], at: 1_700_000_001)
            var bob = AccountRecord(name: "bob")
            bob.pending = EnrollmentRecord(sealedSecret: [4, 5], algorithm: "SHA256", digits: 8, period: 60, createdAt: 200)
            try t.save(bob)
        }
        var lines: [String] = []
        let dry = try StoreMigration.run(source: source, target: target, dryRun: true, replace: false, now: 0) { lines.append($0) }
        XCTAssertEqual(dry.accounts, 2)
        XCTAssertEqual(try StoreMigration.snapshot(target), [])
        let counts = try StoreMigration.run(source: source, target: target, dryRun: false, replace: false, now: 0) { lines.append($0) }
        XCTAssertEqual([counts.accounts, counts.enrolled, counts.pending, counts.recoveryCodes, counts.usedRecoveryCodes, counts.lockedOut],
                       [2, 1, 1, 3, 1, 1])
        XCTAssertEqual(try StoreMigration.snapshot(target), try StoreMigration.snapshot(source))
        XCTAssertThrowsError(try StoreMigration.run(source: source, target: target, dryRun: false, replace: false) { _ in }) {
            XCTAssertTrue("\($0)".contains("the target holds 2 account(s)"), "\($0)")
        }
        try target.writeAndWait { t in try t.save(AccountRecord(name: "stale")) }
        _ = try StoreMigration.run(source: source, target: target, dryRun: false, replace: true) { _ in }
        XCTAssertEqual(try StoreMigration.snapshot(target), try StoreMigration.snapshot(source))
    }
}
