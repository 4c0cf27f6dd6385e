// The store's statements run with SQLite's C API on statements their connection keeps prepared:
// binding through GRDB (each argument boxed as a DatabaseValue, an array of existentials, a
// cursor) cost more than SQLite's own work for a one-row lookup or update
// (docs/PERFORMANCE-NOTES.md). The writer's transactions and savepoints run the same way
// (SQLiteWriteTransaction), and so do the immediate readers' lookups (SQLiteReadConnection).
import GRDB
import GRDBSQLite

/// A connection that keeps its prepared statements for the next call: GRDB's Database (its
/// statement cache) or an immediate reader's SQLiteReadConnection.
protocol SQLiteStatementSource {
    /// The prepared statement for `sql`; the caller resets it after use.
    func preparedStatement(_ sql: String) throws -> SQLiteStatement
    /// The connection's handle, for its error message and change count.
    var handle: SQLiteConnection? { get }
}

extension Database: SQLiteStatementSource {
    func preparedStatement(_ sql: String) throws -> SQLiteStatement { try cachedStatement(sql: sql).sqliteStatement }
    var handle: SQLiteConnection? { sqliteConnection }
}

enum SQLiteStatementCalls {
    /// A value bound to a `?` of the statement.
    enum Parameter {
        case text(String)
        case integer(Int64)
        case blob([UInt8])
        case null

        static func integer(_ value: Int) -> Parameter { .integer(Int64(value)) }
        static func integer(_ value: Int64?) -> Parameter { value.map { .integer($0) } ?? .null }
        static func integer(_ value: Int?) -> Parameter { value.map { .integer(Int64($0)) } ?? .null }
        static func text(_ value: String?) -> Parameter { value.map { .text($0) } ?? .null }
        static func blob(_ value: [UInt8]?) -> Parameter { value.map { .blob($0) } ?? .null }
    }

    /// Runs `sql` with `parameters`, handing each result row to `row` (nothing is kept of a row
    /// after `row` returns). The statement is reset and its bindings cleared whatever happens.
    static func run(_ db: some SQLiteStatementSource, _ sql: String, _ parameters: [Parameter],
                    row: (SQLiteStatement) throws -> Void = { _ in }) throws {
        let raw = try db.preparedStatement(sql)
        sqlite3_reset(raw)
        defer {
            sqlite3_reset(raw)
            sqlite3_clear_bindings(raw)
        }
        for (index, parameter) in parameters.enumerated() {
            let bound = bind(parameter, to: raw, at: Int32(index + 1))
            guard bound == SQLITE_OK else { throw failure(db, "binding a parameter", bound) }
        }
        while true {
            let stepped = sqlite3_step(raw)
            if stepped == SQLITE_DONE { return }
            guard stepped == SQLITE_ROW else { throw failure(db, "running a statement", stepped) }
            try row(raw)
        }
    }

    /// Runs a statement that changes rows; how many rows it changed.
    static func change(_ db: some SQLiteStatementSource, _ sql: String, _ parameters: [Parameter]) throws -> Int {
        try run(db, sql, parameters)
        return Int(sqlite3_changes(db.handle))
    }

    /// The integer in the first column of the first row (a COUNT), 0 when there is no row.
    static func integer(_ db: some SQLiteStatementSource, _ sql: String, _ parameters: [Parameter]) throws -> Int {
        var value: Int64 = 0
        var first = true
        try run(db, sql, parameters) { raw in
            if first { value = sqlite3_column_int64(raw, 0) }
            first = false
        }
        return Int(value)
    }

    private static func bind(_ parameter: Parameter, to raw: SQLiteStatement, at position: Int32) -> Int32 {
        // SQLite copies text and blobs (SQLITE_TRANSIENT): the bytes are only valid in the closures.
        switch parameter {
        case .text(var text):
            return text.withUTF8 { bytes in
                guard !bytes.isEmpty else { return sqlite3_bind_text(raw, position, "", 0, transient) }
                return bytes.withMemoryRebound(to: CChar.self) {
                    sqlite3_bind_text(raw, position, $0.baseAddress, Int32($0.count), transient)
                }
            }
        case .integer(let value):
            return sqlite3_bind_int64(raw, position, value)
        case .blob(let bytes):
            // A zero-length blob, not NULL: an empty array is a value.
            guard !bytes.isEmpty else { return sqlite3_bind_zeroblob(raw, position, 0) }
            return bytes.withUnsafeBytes { sqlite3_bind_blob(raw, position, $0.baseAddress, Int32($0.count), transient) }
        case .null:
            return sqlite3_bind_null(raw, position)
        }
    }

    /// SQLITE_TRANSIENT, a macro Swift does not import.
    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

    static func failure(_ db: some SQLiteStatementSource, _ what: String, _ code: Int32) -> StoreError {
        StoreError("\(what): \(String(cString: sqlite3_errmsg(db.handle))) (SQLite \(code))")
    }
}

/// One column of the current result row, read with SQLite's C API; nil for NULL.
enum SQLiteColumn {
    private static func isNull(_ raw: SQLiteStatement, _ column: Int32) -> Bool {
        sqlite3_column_type(raw, column) == SQLITE_NULL
    }

    static func int64(_ raw: SQLiteStatement, _ column: Int32) -> Int64? {
        isNull(raw, column) ? nil : sqlite3_column_int64(raw, column)
    }

    static func integer(_ raw: SQLiteStatement, _ column: Int32) -> Int? {
        int64(raw, column).map { Int($0) }
    }

    static func text(_ raw: SQLiteStatement, _ column: Int32) -> String? {
        guard !isNull(raw, column), let bytes = sqlite3_column_text(raw, column) else { return nil }
        let count = Int(sqlite3_column_bytes(raw, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    static func blob(_ raw: SQLiteStatement, _ column: Int32) -> [UInt8]? {
        guard !isNull(raw, column) else { return nil }
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let bytes = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
}
