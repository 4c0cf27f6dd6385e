// Where the PostgreSQL store is and how to reach it safely: the postgres_* keys of twofactord.conf,
// or a postgresql:// URL (tests, and commands that name a store on the command line). The password
// is never part of either: it is read from postgres_password_file (URL: passfile=), a file only
// root or the daemon's user may read, and nothing here ever prints it.
import Foundation

public enum StoreKind: String, Sendable, Equatable, CaseIterable {
    case sqlite, postgresql
}

public struct PostgresSettings: Sendable, Equatable {
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        /// No TLS: only for a database on this host (a Unix socket or loopback).
        case disable
        /// TLS; the server's certificate must chain to postgres_ca_file, whatever name it carries.
        case verifyCA = "verify-ca"
        /// TLS; the certificate must chain to postgres_ca_file and name postgres_host.
        case verifyFull = "verify-full"
    }

    /// A host name, an IP address, or the directory of the server's Unix socket (starts with '/').
    public var host = "localhost"
    public var port = 5432
    public var database = "twofactor"
    public var user = "twofactord"
    /// Empty: no password (client certificate, peer or trust authentication).
    public var passwordFile = ""
    public var tlsMode = TLSMode.verifyFull
    /// Empty: the system's trusted certificate authorities.
    public var caFile = ""
    /// The client certificate and its key (PEM), for certificate authentication; both or neither.
    public var certificateFile = ""
    public var privateKeyFile = ""
    /// Seconds allowed to connect, and to run one unit of work (connect included).
    public var timeout: Double = 2

    public init() {}

    /// A description to show people: never the password.
    public var displayName: String {
        let place = host.hasPrefix("/") ? host : (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        return "postgresql://\(user)@\(place)/\(database)?sslmode=\(tlsMode.rawValue)"
    }

    /// Parses `postgresql://USER@HOST:PORT/DATABASE?sslmode=..&sslrootcert=..&sslcert=..&sslkey=..
    /// &passfile=..&connect_timeout=..` (libpq's names). A password inside the URL is refused: it
    /// would end up in shell history, process lists and logs.
    public init(url text: String) throws(StoreError) {
        guard let components = URLComponents(string: text),
              components.scheme == "postgresql" || components.scheme == "postgres" else {
            throw StoreError("'\(Self.redacted(text))' is not a postgresql:// URL")
        }
        if components.password != nil {
            throw StoreError("a postgresql:// URL must not contain a password; put it in a file and name it with passfile=")
        }
        if let user = components.user, !user.isEmpty { self.user = user }
        if let host = components.host, !host.isEmpty { self.host = host }
        if let port = components.port {
            guard (1...65_535).contains(port) else { throw StoreError("port \(port) is out of range") }
            self.port = port
        }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        if !path.isEmpty { database = path }
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else {
                    throw StoreError("sslmode must be disable, verify-ca or verify-full, got '\(value)'")
                }
                tlsMode = mode
            case "sslrootcert": caFile = value
            case "sslcert": certificateFile = value
            case "sslkey": privateKeyFile = value
            case "passfile": passwordFile = value
            case "host": host = value  // libpq's way to name a socket directory
            case "connect_timeout":
                guard let seconds = Double(value), seconds > 0, seconds <= 3600 else {
                    throw StoreError("connect_timeout must be seconds from 0 to 3600, got '\(value)'")
                }
                timeout = seconds
            default:
                throw StoreError("unknown parameter '\(item.name)' in the postgresql:// URL")
            }
        }
        if let problem = problem { throw StoreError(problem) }
    }

    /// What is wrong with this combination of settings, or nil.
    public var problem: String? {
        if certificateFile.isEmpty != privateKeyFile.isEmpty {
            return "postgres_cert_file and postgres_key_file go together: set both or neither"
        }
        if tlsMode == .disable && (!certificateFile.isEmpty || !caFile.isEmpty) {
            return "postgres_sslmode = disable, but a certificate or CA file is set"
        }
        if host.hasPrefix("/") && tlsMode != .disable {
            return "a Unix socket directory (\(host)) needs postgres_sslmode = disable"
        }
        return nil
    }

    /// Reads the password file, which must be private: owned by root or the daemon's user and
    /// not readable by group or others. Nil when no file is set.
    public func readPassword() throws(StoreError) -> String? {
        guard !passwordFile.isEmpty else { return nil }
        var info = stat()
        guard stat(passwordFile, &info) == 0 else {
            throw StoreError("postgres_password_file \(passwordFile): \(String(cString: strerror(errno)))")
        }
        if let problem = TrustedFile.problem(info, forbidden: 0o077, access: "readable or writable", remedy: "600") {
            throw StoreError("postgres_password_file \(passwordFile) \(problem)")
        }
        guard let data = FileManager.default.contents(atPath: passwordFile),
              var password = String(data: data, encoding: .utf8) else {
            throw StoreError("postgres_password_file \(passwordFile) cannot be read as UTF-8 text")
        }
        while password.hasSuffix("\n") || password.hasSuffix("\r") { password.removeLast() }
        guard !password.isEmpty else { throw StoreError("postgres_password_file \(passwordFile) is empty") }
        return password
    }

    /// `text` with anything between "://" and "@" replaced, for error messages about a bad URL.
    static func redacted(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@") else { return text }
        return text[..<scheme.upperBound] + "…" + text[at...]
    }
}
