// The audit log: one line per verification and per management operation, in a stable
// `word key=value ...` form that fail2ban can match. Never a secret or a code.
import CTwoFactorSystem
import Foundation
import Logging
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
    /// Why the daemon stopped (`stop reason=`): a signal, or its listening socket closed.
    case sigterm = "SIGTERM"
    case sigint = "SIGINT"
    case closed
}

public final class AuditLog: Sendable {
    public enum Sink: Sendable { case syslog, stderr }
    public let sink: Sink
    /// ` node=NAME` (config `node_name`), appended to every line so one central log of a fleet shows
    /// where each event happened; empty when no node name is given (unit tests).
    private let nodeSuffix: String
    private let lock = NSLock()

    public init(target: LogTarget, node: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        nodeSuffix = node.map { " node=\(Self.value($0))" } ?? ""
        switch target {
        case .syslog: sink = .syslog
        case .stderr: sink = .stderr
        case .auto: sink = environment["JOURNAL_STREAM"] != nil ? .stderr : .syslog
        }
        if sink == .syslog { twofactor_openlog("twofactord", LOG_AUTHPRIV) }
    }

    /// Writes one line; `priority` is a syslog level (LOG_INFO, LOG_WARNING, LOG_ERR).
    public func write(_ line: String, priority: Int32 = LOG_INFO) {
        // Last, so the fields before it (and fail2ban patterns on them) read as they always did.
        let line = line + nodeSuffix
        switch sink {
        case .syslog:
            twofactor_syslog(LOG_AUTHPRIV | priority, line)
        case .stderr:
            // One write(2) per line so concurrent lines never interleave.
            let bytes = Array((line + "\n").utf8)
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
        var line = "verify account=\(Self.value(account)) service=\(Self.value(service)) rhost=\(Self.value(remoteHost))"
        line += " tty=\(Self.value(tty)) method=\(method ?? "-") result=\(result.rawValue) reason=\(reason.rawValue)"
        if let clockOffset { line += " clock_offset=" + String(format: "%+.3fs", clockOffset) }
        write(line, priority: result.priority)
    }

    /// `result` is ok, rejected, denied or error.
    public func management(_ operation: String, account: String?, caller: Caller, result: AuditResult, reason: AuditReason) {
        write("\(operation) account=\(Self.value(account)) by=\(Self.value(caller.name ?? "?"))(uid=\(caller.uid)) result=\(result.rawValue) reason=\(reason.rawValue)",
              priority: result.priority)
    }

    public func start(version: String, socket: String, database: String, pid: Int32) {
        write("start version=\(version) socket=\(Self.value(socket)) database=\(Self.value(database)) pid=\(pid)")
    }

    public func stop(reason: AuditReason) {
        write("stop reason=\(reason.rawValue)")
    }

    /// An NTP server outvoted by the others (`agree` of `sources` agreed without it).
    public func falseticker(server: String, offsetSeconds: Double, agree: Int, sources: Int, truechimers: [String]) {
        write("ntp-falseticker server=\(Self.value(server)) offset=\(String(format: "%+.3fs", offsetSeconds)) "
                + "agree=\(agree)/\(sources) truechimers=\(Self.value(truechimers.joined(separator: ",")))",
              priority: LOG_WARNING)
    }

    public func lockout(account: String, until: Int64, failures: Int) {
        write("lockout account=\(Self.value(account)) until=\(Self.timestamp(until)) failures=\(failures)", priority: LOG_WARNING)
    }

    static func timestamp(_ unixTime: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(unixTime)))
    }

    /// Makes a value safe for a `key=value` line: non-printable and non-ASCII bytes, quotes and
    /// backslashes become '?', and a value with spaces or '=' is quoted, so nobody can forge a
    /// field with a crafted user name. Long values are cut.
    public static func value(_ text: String?) -> String {
        guard let text, !text.isEmpty else { return "-" }
        var bytes: [UInt8] = []
        var needsQuotes = false
        for byte in text.utf8.prefix(128) {
            switch byte {
            case 0x20, UInt8(ascii: "="):
                needsQuotes = true
                bytes.append(byte)
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                bytes.append(UInt8(ascii: "?"))
            case 0x21...0x7e:
                bytes.append(byte)
            default:
                bytes.append(UInt8(ascii: "?"))
            }
        }
        let clean = String(decoding: bytes, as: UTF8.self)
        return needsQuotes ? "\"\(clean)\"" : clean
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
        audit.write("\(level) \(text)", priority: priority)
    }
}
