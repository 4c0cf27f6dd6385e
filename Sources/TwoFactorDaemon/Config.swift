// twofactord's configuration file: `key = value` lines, `#` comments, blank lines ignored.
// Every key, its default and its meaning are documented in config/twofactord.conf and twofactord(8).
import Foundation
import TwoFactorCore

public enum LogTarget: String, Sendable, Equatable {
    case auto, syslog, stderr
}

public struct DaemonConfig: Sendable, Equatable {
    public static let defaultPath = "/etc/twofactor/twofactord.conf"

    public var socket = "/run/twofactor/twofactord.sock"
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
    public var ntpServers = ["time1.google.com", "pool.ntp.org"]
    public var ntpInterval: Double = 900
    public var ntpTimeout: Double = 2
    public var ntpSamples = 4
    public var clockWarnThreshold: Double = 10
    public var clockCompensation = true
    public var clockCompensationMax: Double = 3600
    public var driftLearning = true
    public var driftMaxSteps = 2

    public init() {}

    public var databasePath: String { (stateDirectory as NSString).appendingPathComponent("twofactor.db") }

    public var clockConfiguration: ClockConfiguration {
        ClockConfiguration(servers: ntpServers, intervalSeconds: ntpInterval, timeoutSeconds: ntpTimeout,
                           samples: ntpSamples, warnThresholdSeconds: clockWarnThreshold,
                           compensation: clockCompensation, compensationMaxSeconds: clockCompensationMax)
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
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: nil, message: "not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> DaemonConfig {
        var config = DaemonConfig()
        var seen: [String: Int] = [:]
        var algorithm = OTPAlgorithm.sha1, digits = 6, period = 30
        var digitsLine = 0, periodLine = 0
        // "\r\n" is one Character in Swift, so CRLF files need it as a separator of its own.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, rawLine) in lines.enumerated() {
            let lineNumber = index + 1
            func fail(_ message: String) -> ConfigError { ConfigError(file: file, line: lineNumber, message: message) }
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            // A comment starts at a '#' that begins the line or follows white space.
            if let hash = commentStart(line) { line = line[..<hash] }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw fail("expected 'key = value', got '\(printable(trimmed))'")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if let first = seen[key] { throw fail("'\(printable(key))' is already set on line \(first)") }
            seen[key] = lineNumber

            switch key {
            case "socket": config.socket = try absolutePath(value, key, fail)
            case "socket_mode":
                guard let mode = UInt32(value, radix: 8), mode <= 0o777 else {
                    throw fail("socket_mode must be an octal permission like 0666, got '\(printable(value))'")
                }
                config.socketMode = mode
            case "state_directory": config.stateDirectory = try absolutePath(value, key, fail)
            case "key_file": config.keyFile = try absolutePath(value, key, fail)
            case "admin_group":
                guard !value.isEmpty, !value.contains(where: { $0.isWhitespace }) else {
                    throw fail("admin_group must be a group name")
                }
                config.adminGroup = value
            case "issuer":
                guard !value.isEmpty, value.count <= 128, !value.contains(":"),
                      !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                    throw fail("issuer must be 1 to 128 printable characters without ':'")
                }
                config.issuer = value
            case "algorithm":
                guard let parsed = OTPAlgorithm(rawValue: value.uppercased()) else {
                    throw fail("algorithm must be SHA1, SHA256 or SHA512, got '\(printable(value))'")
                }
                algorithm = parsed
            case "digits": digits = try integer(value, key, 6...8, fail); digitsLine = lineNumber
            case "period": period = try integer(value, key, 1...3600, fail); periodLine = lineNumber
            case "window": config.window = try integer(value, key, 0...10, fail)
            case "max_failures": config.maxFailures = try integer(value, key, 1...1_000_000, fail)
            case "lockout_seconds": config.lockoutSeconds = Int64(try integer(value, key, 1...31_536_000, fail))
            case "lockout_max_seconds": config.lockoutMaxSeconds = Int64(try integer(value, key, 1...31_536_000, fail))
            case "max_connections": config.maxConnections = try integer(value, key, 1...100_000, fail)
            case "read_timeout": config.readTimeout = try seconds(value, key, 0.001...3600, fail)
            case "log":
                guard let target = LogTarget(rawValue: value) else {
                    throw fail("log must be auto, syslog or stderr, got '\(printable(value))'")
                }
                config.log = target
            case "ntp_servers":
                let servers = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                for server in servers where !validServer(server) {
                    throw fail("ntp_servers: '\(printable(server))' is not host or host:port")
                }
                config.ntpServers = servers
            case "ntp_interval": config.ntpInterval = try seconds(value, key, 1...86_400, fail)
            case "ntp_timeout": config.ntpTimeout = try seconds(value, key, 0.01...60, fail)
            case "ntp_samples": config.ntpSamples = try integer(value, key, 1...64, fail)
            case "clock_warn_threshold": config.clockWarnThreshold = try seconds(value, key, 0.001...86_400, fail)
            case "clock_compensation": config.clockCompensation = try boolean(value, key, fail)
            case "clock_compensation_max": config.clockCompensationMax = try seconds(value, key, 0...31_622_400, fail)
            case "drift_learning": config.driftLearning = try boolean(value, key, fail)
            case "drift_max_steps": config.driftMaxSteps = try integer(value, key, 0...10, fail)
            default:
                throw fail("unknown key '\(printable(key))'")
            }
        }
        do {
            config.parameters = try OTPParameters(algorithm: algorithm, digits: digits, period: period)
        } catch {
            throw ConfigError(file: file, line: max(digitsLine, periodLine), message: "\(error)")
        }
        if config.lockoutMaxSeconds < config.lockoutSeconds {
            let line = seen["lockout_max_seconds"] ?? seen["lockout_seconds"]
            throw ConfigError(file: file, line: line, message: "lockout_max_seconds must not be below lockout_seconds")
        }
        return config
    }

    static func commentStart(_ line: Substring) -> Substring.Index? {
        var previous: Character = " "
        for index in line.indices {
            let character = line[index]
            if character == "#" && (previous == " " || previous == "\t") { return index }
            previous = character
        }
        return nil
    }

    static func absolutePath(_ value: String, _ key: String, _ fail: (String) -> ConfigError) throws(ConfigError) -> String {
        guard value.hasPrefix("/"), !value.contains("\0") else {
            throw fail("\(key) must be an absolute path, got '\(printable(value))'")
        }
        return value
    }

    static func integer(_ value: String, _ key: String, _ range: ClosedRange<Int>,
                        _ fail: (String) -> ConfigError) throws(ConfigError) -> Int {
        guard let number = Int(value), range.contains(number) else {
            throw fail("\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound), got '\(printable(value))'")
        }
        return number
    }

    static func seconds(_ value: String, _ key: String, _ range: ClosedRange<Double>,
                        _ fail: (String) -> ConfigError) throws(ConfigError) -> Double {
        guard let number = Double(value), number.isFinite, range.contains(number) else {
            throw fail("\(key) must be a number of seconds from \(range.lowerBound) to \(range.upperBound), got '\(printable(value))'")
        }
        return number
    }

    static func boolean(_ value: String, _ key: String, _ fail: (String) -> ConfigError) throws(ConfigError) -> Bool {
        switch value.lowercased() {
        case "yes", "true", "on": return true
        case "no", "false", "off": return false
        default: throw fail("\(key) must be yes or no, got '\(printable(value))'")
        }
    }

    static func validServer(_ server: String) -> Bool {
        var host = Substring(server)
        if let colon = server.lastIndex(of: ":") {
            guard let port = Int(server[server.index(after: colon)...]), (1...65535).contains(port) else { return false }
            host = server[..<colon]
        }
        return !host.isEmpty && host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
    }

    /// Keeps error messages on one readable line whatever the file contains.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(80).map {
            $0.properties.generalCategory == .control ? "?" : $0
        }))
    }
}
