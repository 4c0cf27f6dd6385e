// What the doctor found: one finding per problem, with the fix. The exit status follows from the
// worst finding (Severity.exitStatus is the one definition).

public enum Severity: Int, Comparable, Sendable {
    /// Nothing wrong; said so the person sees what was checked.
    case ok = 0
    /// Worth knowing (a choice the administrator made, something skipped).
    case info
    /// A lockout, a weakness or something that could not be checked.
    case warning
    /// A login succeeds without the code (or without anything).
    case hole

    public static func < (a: Severity, b: Severity) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .ok: return "ok"
        case .info: return "info"
        case .warning: return "warning"
        case .hole: return "hole"
        }
    }

    /// 0 all protected, 1 warnings, 2 a hole.
    public static func exitStatus(_ findings: [Finding]) -> Int32 {
        let worst = findings.map(\.severity).max() ?? .ok
        switch worst {
        case .hole: return 2
        case .warning: return 1
        case .ok, .info: return 0
        }
    }
}

public struct Finding: Sendable {
    public var severity: Severity
    /// "pam:sshd", "sshd", "node".
    public var area: String
    /// A stable identifier for scripts ("pam.missing", "sshd.publickey-only", ...).
    public var check: String
    public var title: String
    public var detail: String
    public var fix: String?

    public init(_ severity: Severity, area: String, check: String, title: String, detail: String = "", fix: String? = nil) {
        self.severity = severity
        self.area = area
        self.check = check
        self.title = title
        self.detail = detail
        self.fix = fix
    }
}
