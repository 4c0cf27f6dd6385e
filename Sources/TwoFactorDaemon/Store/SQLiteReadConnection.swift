// A read-only SQLite connection opened with SQLite's C API, for the store's immediate readers:
// a `check` is one lookup, answered on the connection's thread, and going through GRDB's
// DatabaseQueue (a dispatch queue entered for every read, the statement cache keyed by the hash
// of the statement's text) was an eighth of the daemon's work per check
// (docs/PERFORMANCE-NOTES.md, fifth round).
import GRDB
import GRDBSQLite

final class SQLiteReadConnection: SQLiteStatementSource {
    let handle: SQLiteConnection?
    /// The statements prepared so far, by their text. The store asks for a handful, always the
    /// same constant strings (SQLiteTransaction's reads), so a short list is quicker than
    /// hashing a long SELECT for every lookup.
    private var statements: [(sql: String, statement: SQLiteStatement)] = []

    /// Opens `path` read-only. Busy is an error at once (no busy handler): the caller then asks
    /// the store's read queue, which waits. `cacheKiB` bounds this connection's page cache.
    init(path: String, cacheKiB: Int) throws(StoreError) {
        var connection: SQLiteConnection?
        // NOMUTEX: one thread at a time uses it (ImmediateReader's lock), so SQLite's own
        // mutex around every call would only cost.
        let opened = sqlite3_open_v2(path, &connection, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        handle = connection
        guard opened == SQLITE_OK else {
            let message = connection.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(connection)
            throw StoreError("cannot open \(path) for reading: \(message) (SQLite \(opened))")
        }
        do {
            try SQLiteStatementCalls.run(self, "PRAGMA cache_size = -\(cacheKiB)", [])
        } catch {
            close()
            throw error as? StoreError ?? StoreError("\(error)")
        }
    }

    func preparedStatement(_ sql: String) throws -> SQLiteStatement {
        // Equal strings made from the same constant share storage, and then compare at once.
        for entry in statements where entry.sql == sql { return entry.statement }
        var statement: SQLiteStatement?
        let prepared = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard prepared == SQLITE_OK, let statement else {
            throw SQLiteStatementCalls.failure(self, "preparing a statement", prepared)
        }
        statements.append((sql, statement))
        return statement
    }

    /// Finalizes every statement and closes the connection; nothing may use it afterwards.
    func close() {
        for entry in statements { sqlite3_finalize(entry.statement) }
        statements = []
        sqlite3_close_v2(handle)
    }
}
