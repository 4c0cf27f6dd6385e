// twofactord's configuration file: `key = value` lines, `#` comments, blank lines ignored.
// The keys, their values and their documentation are defined once, in ConfigKeys.swift; each
// key's default is the initial value of its DaemonConfig field here.
import Foundation
import TwoFactorCore
import TwoFactorWire

public enum LogTarget: String, Sendable, Equatable, CaseIterable {
    case auto, syslog, stderr
}

public struct DaemonConfig: Sendable, Equatable {
    public static let defaultPath = "/etc/twofactor/twofactord.conf"

    public var socket = Product.defaultSocket
    public var socketMode: UInt32 = 0o666
    public var stateDirectory = "/var/lib/twofactor"
    public var keyFile = "/etc/twofactor/secret.key"
    public var adminGroup = "twofactor-admin"
    public var issuer = DaemonConfig.hostName()
    public var parameters = OTPParameters.standard
    public var window = 1
    public var maxFailures = 5
    public var lockoutSeconds: Int64 = 300
    public var lockoutMaxSeconds: Int64 = 3600
    public var maxConnections = 64
    public var readTimeout: Double = 5
    public var log = LogTarget.auto
    public var nodeName = DaemonConfig.hostName()
    public var ntpServers = [NTPServerName(host: "time1.google.com"), NTPServerName(host: "pool.ntp.org")]
    public var ntpInterval: Double = 900
    public var ntpTimeout: Double = 2
    public var ntpSamples = 4
    public var clockWarnThreshold: Double = 10
    public var clockCompensation = true
    public var clockCompensationMax: Double = 180
    public var clockMinSources = 2
    public var driftLearning = true
    public var driftMaxSteps = 2
    public var hotpLookAhead = 10
    public var hotpResyncWindow = 100
    public var auditFormat = AuditFormat.text
    // The login policy (Policy/LoginPolicy.swift).
    public var exemptNetworks: [IPNetwork] = []
    public var exemptGroups: [String] = []
    public var requireGroups: [String] = []
    public var enforce = EnforceMode.no
    public var enforceGroups: [String] = []
    public var enforceFrom: Int64? = nil
    public var enforceGraceLogins = 0
    public var store = StoreKind.sqlite
    public var postgres = PostgresSettings()

    public init() {}

    public var databasePath: String { (stateDirectory as NSString).appendingPathComponent("twofactor.db") }

    /// The store as the audit log and messages name it (never with a password).
    public var storeName: String { store == .postgresql ? postgres.displayName : databasePath }

    public var clockConfiguration: ClockConfiguration {
        ClockConfiguration(servers: ntpServers, intervalSeconds: ntpInterval, timeoutSeconds: ntpTimeout,
                           samples: ntpSamples, warnThresholdSeconds: clockWarnThreshold,
                           compensation: clockCompensation, compensationMaxSeconds: clockCompensationMax,
                           minimumSources: clockMinSources)
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }
}

/// A problem in the configuration, reported as `FILE:LINE: message` (LINE omitted when the file
/// as a whole is the problem).
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var message: String

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

public enum ConfigParser {
    /// Reads `path`. A missing file is all defaults only when `missingIsDefault` (the default path).
    public static func load(path: String, missingIsDefault: Bool) throws(ConfigError) -> DaemonConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            if missingIsDefault && !FileManager.default.fileExists(atPath: path) { return DaemonConfig() }
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"
            throw ConfigError(file: path, line: nil, message: reason)
        }
        // Whoever can write the configuration chooses the key file, the store and the admin group.
        var info = stat()
        if stat(path, &info) == 0,
           let problem = TrustedFile.problem(info, forbidden: 0o022, access: "writable", remedy: "go-w") {
            throw ConfigError(file: path, line: nil, message: problem)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: nil, message: "not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> DaemonConfig {
        var config = DaemonConfig()
        var seen: [String: Int] = [:]
        // "\r\n" is one Character in Swift, so CRLF files need it as a separator of its own.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, rawLine) in lines.enumerated() {
            let lineNumber = index + 1
            func fail(_ message: String) -> ConfigError { ConfigError(file: file, line: lineNumber, message: message) }
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            // A comment starts at a '#' that begins the line, follows white space or begins a value.
            if let hash = commentStart(line) { line = line[..<hash] }
            let trimmed = line.trimmingCharacters(in: Self.blanks)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw fail("expected 'key = value', got '\(printable(trimmed))'")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: Self.blanks)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: Self.blanks)
            if let first = seen[key] { throw fail("'\(printable(key))' is already set on line \(first)") }
            seen[key] = lineNumber

            guard let definition = ConfigKeys.named(key) else { throw fail("unknown key '\(printable(key))'") }
            do throws(ConfigValueError) { try definition.set(value, in: &config) } catch {
                throw fail("\(key) must be \(error.requirement), got '\(printable(error.got))'"
                           + (error.reason.map { " (\($0))" } ?? ""))
            }
        }
        if config.lockoutMaxSeconds < config.lockoutSeconds {
            let line = seen["lockout_max_seconds"] ?? seen["lockout_seconds"]
            throw ConfigError(file: file, line: line, message: "lockout_max_seconds must not be below lockout_seconds")
        }
        if config.enforce == .groups && config.enforceGroups.isEmpty {
            throw ConfigError(file: file, line: seen["enforce"], message: "enforce = groups needs enforce_groups")
        }
        if config.store == .postgresql, let problem = config.postgres.problem {
            throw ConfigError(file: file, line: seen["store"], message: problem)
        }
        return config
    }

    /// What is trimmed around keys and values: white space, and a carriage return, which no
    /// value can keep (`--print-config` ends its lines right after the value).
    static let blanks = CharacterSet.whitespaces.union(CharacterSet(charactersIn: "\r"))

    /// '#' right after the first '=' counts as after white space, so "key =#x" is "key = #x"
    /// (an empty value): a value never begins with '#', and `--print-config`, which writes
    /// "key = value", reads back the same.
    static func commentStart(_ line: Substring) -> Substring.Index? {
        var previous: Character = " "
        var inValue = false
        for index in line.indices {
            let character = line[index]
            if character == "#" && (previous == " " || previous == "\t") { return index }
            previous = character
            if character == "=" && !inValue {
                inValue = true
                previous = " "
            }
        }
        return nil
    }

    /// Keeps error messages on one readable line whatever the file contains.
    static func printable(_ text: String) -> String { TwoFactorWire.printable(text, limit: 80) }
}
