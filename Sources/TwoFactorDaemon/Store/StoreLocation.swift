// Which store a URL names, for the commands that work on any pair of stores (migrate-store) and
// for naming the store in `twofactor admin health`: sqlite:///ABSOLUTE/PATH or postgresql://...
import Foundation

public enum StoreLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgresql(PostgresSettings)

    public static let urlForms = "sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full"

    public init(url: String) throws(StoreError) {
        if url.hasPrefix("sqlite://") {
            let path = String(url.dropFirst("sqlite://".count))
            guard path.hasPrefix("/"), !path.contains("\0"), !path.hasSuffix("/") else {
                throw StoreError("a SQLite store URL is sqlite:// and an absolute file path (sqlite:///var/lib/twofactor/twofactor.db), not '\(url)'")
            }
            self = .sqlite(path: path)
        } else if url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") {
            self = .postgresql(try PostgresSettings(url: url))
        } else {
            throw StoreError("unknown store URL '\(Self.redact(url))': expected \(Self.urlForms)")
        }
    }

    /// The store a daemon with `config` uses.
    public static func configured(_ config: DaemonConfig) -> StoreLocation {
        switch config.store {
        case .sqlite: .sqlite(path: config.databasePath)
        case .postgresql: .postgresql(config.postgres)
        }
    }

    /// The kind, as `twofactor admin health` shows it.
    public var kind: String {
        switch self {
        case .sqlite: StoreKind.sqlite.rawValue
        case .postgresql: StoreKind.postgresql.rawValue
        }
    }

    /// Printable: never the password (which PostgresSettings keeps only in its file).
    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite://\(path)"
        case .postgresql(let settings): settings.displayName
        }
    }

    /// False only for a SQLite file that is not there (a PostgreSQL database is assumed to be).
    public var exists: Bool {
        guard case .sqlite(let path) = self else { return true }
        return FileManager.default.fileExists(atPath: path)
    }

    /// Opens the store. With `mustExist`, a SQLite file that is not there is an error rather than
    /// a new empty store (a mistyped migration source must not look like a store of no accounts).
    public func open(mustExist: Bool) throws(StoreError) -> any AccountStore {
        switch self {
        case .sqlite(let path):
            if mustExist && !FileManager.default.fileExists(atPath: path) {
                throw StoreError("\(path): no such SQLite store")
            }
            return try SQLiteAccountStore(path: path)
        case .postgresql(let settings):
            return try PostgresAccountStore(settings: settings)
        }
    }

    /// Hides the password of a URL (user:PASSWORD@ and password=PASSWORD), for messages about a
    /// URL that was not understood.
    public static func redact(_ url: String) -> String {
        var text = url
        if let scheme = text.range(of: "://"),
           let at = text[scheme.upperBound...].firstIndex(of: "@"),
           let colon = text[scheme.upperBound..<at].firstIndex(of: ":") {
            text.replaceSubrange(text.index(after: colon)..<at, with: "***")
        }
        if let range = text.range(of: "password=") {
            let end = text[range.upperBound...].firstIndex(of: "&") ?? text.endIndex
            text.replaceSubrange(range.upperBound..<end, with: "***")
        }
        return text
    }
}
