// Account rows decoded with SQLite's C API (SQLiteStatementCalls, SQLiteColumn). A `check` is
// one lookup by name, and decoding it through GRDB's Row (a cursor, a row with a dictionary of
// column names) cost more than SQLite's own work (docs/PERFORMANCE-NOTES.md).
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

    /// The queries, each built once: a statement's text is the key its connection finds the
    /// prepared statement by, so building it for every lookup cost more than decoding the row.
    static let byName = select("WHERE name = ?")
    static let all = select("ORDER BY name")
    static let firstPage = select("ORDER BY name LIMIT ?")
    static let pageAfter = select("WHERE name > ? ORDER BY name LIMIT ?")

    private static func select(_ rest: String) -> String { "SELECT \(columns) FROM account \(rest)" }

    /// Every account row that `query` (one of the above) yields for `parameters`.
    static func fetch(_ db: some SQLiteStatementSource, _ query: String,
                      _ parameters: [SQLiteStatementCalls.Parameter]) throws -> [AccountRecord] {
        var records: [AccountRecord] = []
        try SQLiteStatementCalls.run(db, query, parameters) { records.append(record($0)) }
        return records
    }

    private static func record(_ raw: SQLiteStatement) -> AccountRecord {
        var record = AccountRecord(name: SQLiteColumn.text(raw, 0) ?? "")
        if let secret = SQLiteColumn.blob(raw, 1) {
            record.enrollment = EnrollmentRecord(
                sealedSecret: secret, algorithm: SQLiteColumn.text(raw, 2) ?? "SHA1",
                digits: SQLiteColumn.integer(raw, 3) ?? 6, period: SQLiteColumn.integer(raw, 4) ?? 30,
                createdAt: SQLiteColumn.int64(raw, 5) ?? 0, kind: SQLiteColumn.text(raw, 17) ?? OTPKind.totp.rawValue)
        }
        if let secret = SQLiteColumn.blob(raw, 6) {
            record.pending = EnrollmentRecord(
                sealedSecret: secret, algorithm: SQLiteColumn.text(raw, 7) ?? "SHA1",
                digits: SQLiteColumn.integer(raw, 8) ?? 6, period: SQLiteColumn.integer(raw, 9) ?? 30,
                createdAt: SQLiteColumn.int64(raw, 10) ?? 0, kind: SQLiteColumn.text(raw, 18) ?? OTPKind.totp.rawValue)
        }
        record.lastStep = SQLiteColumn.int64(raw, 11)
        record.lastUsedAt = SQLiteColumn.int64(raw, 12)
        record.failures = SQLiteColumn.integer(raw, 13) ?? 0
        record.lockedUntil = SQLiteColumn.int64(raw, 14)
        record.lockouts = SQLiteColumn.integer(raw, 15) ?? 0
        record.driftSteps = SQLiteColumn.int64(raw, 16) ?? 0
        record.hotpCounter = SQLiteColumn.int64(raw, 19)
        record.hotpResyncCounter = SQLiteColumn.int64(raw, 20)
        record.window = SQLiteColumn.integer(raw, 21)
        record.graceLoginsUsed = SQLiteColumn.integer(raw, 22) ?? 0
        return record
    }
}
