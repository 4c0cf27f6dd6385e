// Account rows decoded with SQLite's C API (SQLiteStatementCalls). A `check` is one lookup by
// name, and decoding it through GRDB's Row (a cursor, a row with a dictionary of column names)
// cost more than SQLite's own work (docs/PERFORMANCE-NOTES.md).
import GRDB
import GRDBSQLite
import TwoFactorCore

enum SQLiteAccountRows {
    /// The columns `record` reads, in its order.
    private static let columns = """
        name, secret, algorithm, digits, period, enrolled_at, pending_secret, pending_algorithm, \
        pending_digits, pending_period, pending_since, last_step, last_used_at, failures, locked_until, \
        lockouts, drift_steps, kind, pending_kind, hotp_counter, hotp_resync_counter, account_window, grace_logins_used
        """

    /// Every account row that `SELECT <the columns> FROM account <rest>` yields for `parameters`.
    static func fetch(_ db: Database, _ rest: String, _ parameters: [SQLiteStatementCalls.Parameter]) throws -> [AccountRecord] {
        var records: [AccountRecord] = []
        try SQLiteStatementCalls.run(db, "SELECT \(columns) FROM account \(rest)", parameters) { records.append(record($0)) }
        return records
    }

    private static func record(_ raw: SQLiteStatement) -> AccountRecord {
        var record = AccountRecord(name: text(raw, 0) ?? "")
        if let secret = blob(raw, 1) {
            record.enrollment = EnrollmentRecord(sealedSecret: secret, algorithm: text(raw, 2) ?? "SHA1",
                                                 digits: integer(raw, 3) ?? 6, period: integer(raw, 4) ?? 30,
                                                 createdAt: int64(raw, 5) ?? 0, kind: text(raw, 17) ?? OTPKind.totp.rawValue)
        }
        if let secret = blob(raw, 6) {
            record.pending = EnrollmentRecord(sealedSecret: secret, algorithm: text(raw, 7) ?? "SHA1",
                                              digits: integer(raw, 8) ?? 6, period: integer(raw, 9) ?? 30,
                                              createdAt: int64(raw, 10) ?? 0, kind: text(raw, 18) ?? OTPKind.totp.rawValue)
        }
        record.lastStep = int64(raw, 11)
        record.lastUsedAt = int64(raw, 12)
        record.failures = integer(raw, 13) ?? 0
        record.lockedUntil = int64(raw, 14)
        record.lockouts = integer(raw, 15) ?? 0
        record.driftSteps = int64(raw, 16) ?? 0
        record.hotpCounter = int64(raw, 19)
        record.hotpResyncCounter = int64(raw, 20)
        record.window = integer(raw, 21)
        record.graceLoginsUsed = integer(raw, 22) ?? 0
        return record
    }

    private static func isNull(_ raw: SQLiteStatement, _ column: Int32) -> Bool {
        sqlite3_column_type(raw, column) == SQLITE_NULL
    }

    private static func int64(_ raw: SQLiteStatement, _ column: Int32) -> Int64? {
        isNull(raw, column) ? nil : sqlite3_column_int64(raw, column)
    }

    private static func integer(_ raw: SQLiteStatement, _ column: Int32) -> Int? {
        int64(raw, column).map { Int($0) }
    }

    private static func text(_ raw: SQLiteStatement, _ column: Int32) -> String? {
        guard !isNull(raw, column), let bytes = sqlite3_column_text(raw, column) else { return nil }
        let count = Int(sqlite3_column_bytes(raw, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    private static func blob(_ raw: SQLiteStatement, _ column: Int32) -> [UInt8]? {
        guard !isNull(raw, column) else { return nil }
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let bytes = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
