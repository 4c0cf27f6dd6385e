// The audit log: one line per check, verification and management operation, in a stable
// `word key=value ...` form that fail2ban can match, or as JSON (audit_format = json); under
// systemd with structured journal fields too. Never a secret or a code.
import CTwoFactorSystem
import Foundation
import Logging
import TwoFactorCore
import TwoFactorWire

/// How an audited request ended: the `result=` word of every audit line.
public enum AuditResult: String, Sendable, CaseIterable {
    /// A code was accepted (verify lines).
    case accepted
    /// A management operation or query was done.
    case ok
    /// Refused for what was asked (a wrong code, a bad request, nothing to confirm ...).
    case rejected
    /// Refused for who asked.
    case denied
    /// The daemon failed (the store); nothing was changed.
    case error

    /// Successes are information, everything else a warning (what fail2ban and admins watch).
    var priority: Int32 { self == .accepted || self == .ok ? LOG_INFO : LOG_WARNING }
}

/// Why an audited event ended as it did: the `reason=` word of every audit line (verify,
/// management and stop lines). The raw values are the log's stable vocabulary: fail2ban filters,
/// the tests and admins match them, so a value never changes. twofactord(8) lists them all
/// (DaemonPackagingTests checks it).
public enum AuditReason: String, Sendable, CaseIterable {
    case ok
    case wrongCode = "wrong-code"
    case codeReused = "code-reused"
    case lockedOut = "locked-out"
    case notEnrolled = "not-enrolled"
    case invalidCode = "invalid-code"
    case codeRequired = "code-required"
    case alreadyEnrolled = "already-enrolled"
    case noPendingEnrollment = "no-pending-enrollment"
    case permissionDenied = "permission-denied"
    case badRequest = "bad-request"
    case internalError = "internal-error"
    /// HOTP: a code beyond the look-ahead window; the next code resynchronises (RFC 4226 7.4).
    case resyncPending = "hotp-resync-pending"
    /// Why the daemon stopped (`stop reason=`): a signal, or its listening socket closed.
    case sigterm = "SIGTERM"
    case sigint = "SIGINT"
    case closed
    /// check: the name has no passwd entry (fail2ban counts these per rhost).
    case unknownUser = "unknown-user"
    /// check: the login policy requires two-factor authentication and the account has none.
    case required = "required"
}

/// How each audit line is written (`audit_format`): `key=value` text for people and fail2ban,
/// or one JSON object per line for log shippers.
public enum AuditFormat: String, Sendable, Equatable, CaseIterable {
    case text, json
}

/// One audit event: its name and its fields, in their stable order. The single source of both
/// renderings (text and JSON) and of the journal fields, so they never disagree.
public struct AuditEvent: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        /// Free text from outside (names, hosts): sanitized in text, escaped in JSON, "-"/null when absent.
        case text(String?)
        /// A word of the log's own vocabulary (result, reason, rule) or a number: as it is.
        case word(String)
        case number(Int64)
        /// Text rendering and JSON literal given separately (a clock offset: "+0.250s" and 0.25).
        case rendered(text: String, json: String)
    }

    public struct Field: Sendable, Equatable {
        public var key: String
        public var value: Value
        /// Text form `(key=value)` glued to the field before it: `by=alice(uid=1000)`.
        public var attached = false
    }

    public var name: String
    public var fields: [Field] = []
    /// The text form when it is not `name key=value ...` (diagnostic messages keep theirs).
    var plainText: String? = nil

    public init(_ name: String) {
        self.name = name
        fields.reserveCapacity(8)  // as many as the longest event has: it never regrows
    }

    mutating func add(_ key: String, _ value: Value, attached: Bool = false) {
        fields.append(Field(key: key, value: value, attached: attached))
    }

    /// `name key=value ...`, the historic form matched by fail2ban and the tests, with `trailing`
    /// (the node) after the fields, and after a diagnostic's plain text too. Appended one field at
    /// a time with no string in between: every request writes a line, and building it from
    /// interpolated strings cost more than the account's lookup.
    func textBytes(trailing: Field?) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(256)
        if let plainText {
            line.appendUTF8(plainText)
        } else {
            line.appendUTF8(name)
            for field in fields { Self.appendText(field, to: &line) }
        }
        if let trailing { Self.appendText(trailing, to: &line) }
        return line
    }

    private static func appendText(_ field: Field, to line: inout [UInt8]) {
        line.append(field.attached ? UInt8(ascii: "(") : UInt8(ascii: " "))
        line.appendUTF8(field.key)
        line.append(UInt8(ascii: "="))
        switch field.value {
        case .text(let value): AuditLog.appendValue(value, to: &line)
        case .word(let word): line.appendUTF8(word)
        case .number(let number): line.appendUTF8(String(number))
        case .rendered(let text, _): line.appendUTF8(text)
        }
        if field.attached { line.append(UInt8(ascii: ")")) }
    }

    /// One JSON object, keys in a fixed order: `time` (UTC, ISO 8601), `event`, then the fields
    /// and `trailing` (the node).
    public func jsonLine(time: Double, trailing: Field? = nil) -> String {
        var line = "{\"time\":\(JSONString.quoted(AuditLog.preciseTimestamp(time))),\"event\":\(JSONString.quoted(name))"
        for field in fields + (trailing.map { [$0] } ?? []) {
            let json: String = switch field.value {
            case .text(let value): value.map { JSONString.quoted(String($0.unicodeScalars.prefix(256))) } ?? "null"
            case .word(let word): JSONString.quoted(word)
            case .number(let number): "\(number)"
            case .rendered(_, let json): json
            }
            line += ",\(JSONString.quoted(field.key)):\(json)"
        }
        return line + "}"
    }
}

fileprivate extension [UInt8] {
    /// Appends the text's UTF-8 with one copy: the keys and words of a line are short strings,
    /// which Swift keeps inline, and `append(contentsOf: text.utf8)` took those byte by byte.
    mutating func appendUTF8(_ text: String) {
        var text = text
        text.withUTF8 { append(contentsOf: $0) }
    }
}

public final class AuditLog: Sendable {
    public enum Sink: Sendable, Equatable { case syslog, stderr, journal }
    public let sink: Sink
    public let format: AuditFormat
    /// This node's name (config `node_name`): the last field of every event, so one central log
    /// of a fleet shows where each event happened; nil when none is given (unit tests).
    private let node: String?
    private let lock = NSLock()
    /// The journal's native socket, for the journal sink (TWOFACTORD_JOURNAL_SOCKET overrides it
    /// for tests that stand in for journald).
    private let journal: JournalSocket?
    private let now: @Sendable () -> Double

    public init(target: LogTarget, format: AuditFormat = .text, node: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.node = node
        let journalPath = environment["TWOFACTORD_JOURNAL_SOCKET"] ?? JournalSocket.defaultPath
        // Started by systemd with its journal on stderr: structured fields go to the journal's
        // own socket instead, when it is there.
        let underSystemd = environment["JOURNAL_STREAM"] != nil
        switch target {
        case .syslog: sink = .syslog
        case .stderr: sink = .stderr
        case .auto:
            sink = underSystemd ? (JournalSocket.exists(journalPath) ? .journal : .stderr) : .syslog
        }
        self.format = format
        self.now = now
        journal = sink == .journal ? JournalSocket(path: journalPath) : nil
        if sink == .syslog { twofactor_openlog("twofactord", LOG_AUTHPRIV) }
    }

    /// Writes one event in the configured format; `priority` is a syslog level.
    public func write(_ event: AuditEvent, priority: Int32 = LOG_INFO) {
        // Last, so the fields before it (and fail2ban patterns on them) read as they always did.
        // Passed beside the event rather than added to it: that would copy its fields.
        let trailing = node.map { AuditEvent.Field(key: "node", value: .word($0)) }
        let line = format == .json ? Array(event.jsonLine(time: now(), trailing: trailing).utf8)
                                   : event.textBytes(trailing: trailing)
        if sink == .journal, let journal {
            var fields = [("MESSAGE", String(decoding: line, as: UTF8.self)), ("PRIORITY", "\(priority)"),
                          ("SYSLOG_IDENTIFIER", "twofactord"), ("SYSLOG_FACILITY", "10"), ("TWOFACTOR_EVENT", event.name)]
            for field in event.fields + (trailing.map { [$0] } ?? []) {
                let value: String? = switch field.value {
                case .text(let text): text.map { Self.printable($0) }
                case .word(let word): word
                case .number(let number): "\(number)"
                case .rendered(let text, _): text
                }
                if let value { fields.append(("TWOFACTOR_" + field.key.uppercased(), value)) }
            }
            if journal.send(fields) { return }
        }
        emit(line, priority: priority)
    }

    /// Writes one finished line (UTF-8, no newline); `priority` is a syslog level.
    private func emit(_ line: [UInt8], priority: Int32) {
        var bytes = line
        switch sink {
        case .syslog:
            bytes.append(0)
            bytes.withUnsafeBufferPointer { text in
                text.withMemoryRebound(to: CChar.self) { twofactor_syslog(LOG_AUTHPRIV | priority, $0.baseAddress!) }
            }
        case .stderr, .journal:
            if sink == .journal, let journal,
               journal.send([("MESSAGE", String(decoding: line, as: UTF8.self)), ("PRIORITY", "\(priority)"),
                             ("SYSLOG_IDENTIFIER", "twofactord"), ("SYSLOG_FACILITY", "10")]) { return }
            // One write(2) per line so concurrent lines never interleave.
            bytes.append(UInt8(ascii: "\n"))
            lock.lock()
            defer { lock.unlock() }
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { Foundation.write(2, $0.baseAddress! + offset, bytes.count - offset) }
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { break }
                offset += written
            }
        }
    }

    /// `result` is accepted, rejected or error.
    public func verify(account: String, service: String?, remoteHost: String?, tty: String?,
                       method: String?, result: AuditResult, reason: AuditReason, clockOffset: Double?) {
        var event = AuditEvent("verify")
        event.add("account", .text(account))
        Self.addContext(&event, service: service, remoteHost: remoteHost, tty: tty)
        event.add("method", method.map { .word($0) } ?? .text(nil))
        event.add("result", .word(result.rawValue))
        event.add("reason", .word(reason.rawValue))
        if let clockOffset {
            event.add("clock_offset", .rendered(text: String(format: "%+.3fs", clockOffset),
                                                json: String(format: "%.3f", clockOffset)))
        }
        write(event, priority: result.priority)
    }

    /// The login policy's answer to `check`: which rule applied (`rule=`, and the network or
    /// group in `detail=`), so an exempt or waved-through login is never silent.
    public func check(account: String, service: String?, remoteHost: String?, tty: String?,
                      rule: String, detail: String?, result: AuditResult, reason: AuditReason) {
        var event = AuditEvent("check")
        event.add("account", .text(account))
        Self.addContext(&event, service: service, remoteHost: remoteHost, tty: tty)
        event.add("rule", .word(rule))
        event.add("detail", .text(detail))
        event.add("result", .word(result.rawValue))
        event.add("reason", .word(reason.rawValue))
        write(event, priority: result.priority)
    }

    /// A login let through without 2FA on one of enforcement's grace logins (`used` of `allowed`).
    public func graceLogin(account: String, service: String?, remoteHost: String?, used: Int, allowed: Int) {
        var event = AuditEvent("grace-login")
        event.add("account", .text(account))
        event.add("service", .text(service))
        event.add("rhost", .text(remoteHost))
        event.add("used", .number(Int64(used)))
        event.add("allowed", .number(Int64(allowed)))
        write(event, priority: LOG_NOTICE)
    }

    static func addContext(_ event: inout AuditEvent, service: String?, remoteHost: String?, tty: String?) {
        event.add("service", .text(service))
        event.add("rhost", .text(remoteHost))
        event.add("tty", .text(tty))
    }

    /// `result` is ok, rejected, denied or error.
    public func management(_ operation: String, account: String?, caller: Caller, result: AuditResult, reason: AuditReason) {
        var event = AuditEvent(operation)
        event.add("account", .text(account))
        event.add("by", .text(caller.name ?? "?"))
        event.add("uid", .number(Int64(caller.uid)), attached: true)
        event.add("result", .word(result.rawValue))
        event.add("reason", .word(reason.rawValue))
        write(event, priority: result.priority)
    }

    public func start(version: String, socket: String, database: String, pid: Int32) {
        var event = AuditEvent("start")
        event.add("version", .text(version))
        event.add("socket", .text(socket))
        event.add("database", .text(database))
        event.add("pid", .number(Int64(pid)))
        write(event)
    }

    public func stop(reason: AuditReason) {
        var event = AuditEvent("stop")
        event.add("reason", .word(reason.rawValue))
        write(event)
    }

    /// An NTP server outvoted by the others (`agree` of `sources` agreed without it).
    public func falseticker(server: String, offsetSeconds: Double, agree: Int, sources: Int, truechimers: [String]) {
        var event = AuditEvent("ntp-falseticker")
        event.add("server", .text(server))
        event.add("offset", .rendered(text: String(format: "%+.3fs", offsetSeconds), json: String(format: "%.3f", offsetSeconds)))
        event.add("agree", .rendered(text: "\(agree)/\(sources)", json: JSONString.quoted("\(agree)/\(sources)")))
        event.add("truechimers", .text(truechimers.joined(separator: ",")))
        write(event, priority: LOG_WARNING)
    }

    /// A lockout started by a failed code; `remoteHost` is where the failing attempt came from
    /// (fail2ban keys on it), nil when it was not a login.
    public func lockout(account: String, until: Int64, failures: Int, remoteHost: String? = nil) {
        var event = AuditEvent("lockout")
        event.add("account", .text(account))
        event.add("until", .rendered(text: Self.timestamp(until), json: JSONString.quoted(Self.timestamp(until))))
        event.add("failures", .number(Int64(failures)))
        event.add("rhost", .text(remoteHost))
        write(event, priority: LOG_WARNING)
    }

    static func timestamp(_ unixTime: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(unixTime)))
    }

    static func preciseTimestamp(_ unixTime: Double) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: unixTime))
    }

    /// A journal field value: one line of printable text (the native protocol's simple form).
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(256).map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
    }

    /// Makes a value safe for a `key=value` line: non-printable and non-ASCII bytes, quotes and
    /// backslashes become '?', and a value with spaces or '=' is quoted, so nobody can forge a
    /// field with a crafted user name. Long values are cut.
    public static func value(_ text: String?) -> String {
        var bytes: [UInt8] = []
        appendValue(text, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `value(text)`, appended to a line being built.
    static func appendValue(_ text: String?, to line: inout [UInt8]) {
        guard let text, !text.isEmpty else { line.append(UInt8(ascii: "-")); return }
        let start = line.count
        var needsQuotes = false
        for byte in text.utf8.prefix(128) {
            switch byte {
            case 0x20, UInt8(ascii: "="):
                needsQuotes = true
                line.append(byte)
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                line.append(UInt8(ascii: "?"))
            case 0x21...0x7e:
                line.append(byte)
            default:
                line.append(UInt8(ascii: "?"))
            }
        }
        if needsQuotes {
            line.insert(UInt8(ascii: "\""), at: start)
            line.append(UInt8(ascii: "\""))
        }
    }
}

/// systemd-journald's native protocol (systemd.journal-fields(7), "Native Journal Protocol"):
/// one datagram per entry on /run/systemd/journal/socket, `KEY=value` lines. Values here are
/// single printable lines, so the simple form suffices. A failed send returns false and the
/// line goes to stderr instead (journald's stream).
final class JournalSocket: @unchecked Sendable {
    static let defaultPath = "/run/systemd/journal/socket"
    let path: String
    private let fd: Int32
    private let lock = NSLock()

    init?(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return nil }
    }

    deinit { close(fd) }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
    }

    func send(_ fields: [(String, String)]) -> Bool {
        var datagram: [UInt8] = []
        for (key, value) in fields {
            datagram += Array(key.utf8) + [UInt8(ascii: "=")] + Array(value.utf8) + [UInt8(ascii: "\n")]
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in pathBytes.enumerated() { buffer[index] = byte }
        }
        lock.lock()
        defer { lock.unlock() }
        let sent = datagram.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        return sent == datagram.count
    }
}

/// Diagnostic messages (not audit events) go to the same place as the audit log.
public struct AuditLogHandler: LogHandler {
    let audit: AuditLog
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info

    public init(audit: AuditLog) { self.audit = audit }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        write(level: event.level, message: event.message)
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        write(level: level, message: message)
    }

    private func write(level: Logger.Level, message: Logger.Message) {
        let priority: Int32 = switch level {
        case .trace, .debug: LOG_DEBUG
        case .info, .notice: LOG_INFO
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
        let text = printable(message.description)
        // Text: "warning clock check: ..." as always; JSON and journal: a "diagnostic" event.
        var event = AuditEvent("diagnostic")
        event.add("level", .word("\(level)"))
        event.add("message", .text(text))
        event.plainText = "\(level) \(text)"
        audit.write(event, priority: priority)
    }
}
