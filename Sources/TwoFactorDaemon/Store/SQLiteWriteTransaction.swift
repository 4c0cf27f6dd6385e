// The writer's transactions and savepoints, as cached statements run with SQLite's C API
// (SQLiteStatementCalls). GRDB's inTransaction and inSavepoint prepare BEGIN, COMMIT, SAVEPOINT
// and RELEASE anew on every call and run them through its observation machinery: measured in
// the writer at 8 clients, that was a quarter of a verify's time in its batch
// (docs/PERFORMANCE-NOTES.md, fourth round). Every verify of a batch waits for all of it.
//
// The store registers no GRDB transaction observer (GRDB would not see these commits), and a
// transaction begun here always ends here, committed or rolled back, before the writer's
// connection goes back to GRDB.
import GRDB
import GRDBSQLite

enum SQLiteWriteTransaction {
    /// Runs `body` in an immediate transaction and commits when it returns true. Rolls back, and
    /// returns false, when it returns false; rolls back and rethrows when it or the commit throws.
    /// `failCommit` (tests) makes the commit itself fail, as a deferred constraint makes a real
    /// COMMIT fail: an orphan recovery code while foreign keys are checked at commit.
    static func run(_ db: Database, failCommit: Bool = false, _ body: () throws -> Bool) throws -> Bool {
        try SQLiteStatementCalls.run(db, "BEGIN IMMEDIATE", [])
        do {
            guard try body() else {
                try rollback(db)
                return false
            }
            if failCommit {
                try SQLiteStatementCalls.run(db, "PRAGMA defer_foreign_keys = ON", [])
                try SQLiteStatementCalls.run(db, "INSERT INTO recovery_code (account, hash) VALUES (?, ?)",
                                             [.text("\u{1}no such account"), .blob([0])])
            }
            try SQLiteStatementCalls.run(db, "COMMIT", [])
            return true
        } catch {
            // A failed COMMIT (or a failed statement) may leave the transaction open, or SQLite
            // may have rolled it back already.
            try? rollback(db)
            throw error
        }
    }

    /// Runs `body` in a savepoint and keeps its changes when it returns true; otherwise undoes
    /// them and returns false. The enclosing transaction goes on either way.
    static func savepoint(_ db: Database, _ body: () -> Bool) throws -> Bool {
        try SQLiteStatementCalls.run(db, "SAVEPOINT unit", [])
        if body() {
            try SQLiteStatementCalls.run(db, "RELEASE unit", [])
            return true
        }
        // ROLLBACK TO keeps the savepoint open; RELEASE then removes it.
        try SQLiteStatementCalls.run(db, "ROLLBACK TO unit", [])
        try SQLiteStatementCalls.run(db, "RELEASE unit", [])
        return false
    }

    private static func rollback(_ db: Database) throws {
        guard sqlite3_get_autocommit(db.sqliteConnection) == 0 else { return }
        try SQLiteStatementCalls.run(db, "ROLLBACK", [])
    }
}
