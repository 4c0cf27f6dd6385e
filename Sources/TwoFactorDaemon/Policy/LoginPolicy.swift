// The login policy: for one login (account, remote address), which rule decides whether a code
// is asked, waved through or refused. The one place that decides it (twofactord.conf's
// exempt_*, require_groups and enforce* keys; twofactord(8) "LOGIN POLICY"). The PAM module only
// carries out the answer of `check`.
import Foundation
import TwoFactorCore

public enum EnforceMode: String, Sendable, Equatable, CaseIterable {
    /// Only require_groups (and the module's `require`) make 2FA mandatory.
    case no
    /// Every account must enroll (from enforce_from, after its grace logins).
    case yes
    /// Members of enforce_groups must.
    case groups
}

/// The rule that decided a `check`: the wire's `rule` field and the audit line's `rule=`.
/// Stable words: fail2ban filters, log shippers and the tests match them.
public enum PolicyRule: String, Sendable, Equatable, CaseIterable {
    /// Enrolled: the code is asked.
    case enrolled
    /// Not enrolled and nothing requires it: the module lets the stack decide (PAM_IGNORE).
    case optional
    /// A member of a require_groups group: a code, or refused when not enrolled.
    case requireGroup = "require-group"
    case exemptGroup = "exempt-group"
    case exemptNetwork = "exempt-network"
    /// Enforcement applies and the deadline or grace logins have not run out yet.
    case enforceGrace = "enforce-grace"
    /// Enforcement applies and has run out: an unenrolled account is refused.
    case enforce
    /// No passwd entry for the name.
    case unknownUser = "unknown-user"
}

public struct PolicyDecision: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// Ask for the code (the account is enrolled).
        case code
        /// No code: an exemption applies.
        case exempt
        /// Not enrolled; the stack decides (PAM_IGNORE), with `message` shown when set.
        case waive
        /// Not enrolled and required: refuse (or enroll at login), with `message`.
        case required
        case unknownUser
    }
    public var outcome: Outcome
    public var rule: PolicyRule
    /// The network or group that matched.
    public var detail: String?
    /// For the person at the login: what is left and what to run.
    public var message: String?
}

/// The groups of one account, looked up through NSS only for the groups the policy names.
public struct GroupMembership: Sendable {
    let name: [UInt8]
    let primaryGroup: UInt32

    /// nil when the account has no passwd entry.
    public static func of(_ user: String) -> GroupMembership? {
        PasswdLookup.user(named: user).map { GroupMembership(name: $0.name, primaryGroup: $0.gid) }
    }

    public func isMember(of group: String) -> Bool {
        guard let entry = PasswdLookup.group(named: group) else { return false }
        return entry.gid == primaryGroup || entry.members.contains { AccountName.same($0, name) }
    }

    func firstGroup(in groups: [String]) -> String? { groups.first { isMember(of: $0) } }
}

public struct LoginPolicy: Sendable, Equatable {
    public var exemptNetworks: [IPNetwork]
    public var exemptGroups: [String]
    public var requireGroups: [String]
    public var enforce: EnforceMode
    public var enforceGroups: [String]
    /// Unix time (UTC midnight of the configured day) from which enforcement refuses.
    public var enforceFrom: Int64?
    public var graceLogins: Int

    public init(config: DaemonConfig) {
        exemptNetworks = config.exemptNetworks
        exemptGroups = config.exemptGroups
        requireGroups = config.requireGroups
        enforce = config.enforce
        enforceGroups = config.enforceGroups
        enforceFrom = config.enforceFrom
        graceLogins = config.enforceGraceLogins
    }

    public static let enableInstruction = "Set it up with `twofactor enable` from an existing session, or ask the administrator."

    /// The rules in order: require_groups outranks every exemption (a sudo member from a trusted
    /// network still gives a code); exemptions outrank enrollment (an enrolled account is not
    /// asked from an exempt network); then enforcement decides for unenrolled accounts.
    /// `graceLoginsUsed` is the account's count of logins without 2FA under enforcement.
    ///
    /// `membership` is looked up (NSS) only when a group is configured, so without group rules
    /// root's checks never wait for NSS. When that lookup finds no such user, an enrolled
    /// account is still asked for its code (an NSS failure must never switch 2FA off) and an
    /// unenrolled one is `unknownUser`, which `check` answers as required (refused).
    public func decide(enrolled: Bool, remoteHost: String?, membership lookup: () -> GroupMembership?, now: Int64,
                       graceLoginsUsed: Int = 0) -> PolicyDecision {
        var membership: GroupMembership? = nil
        if looksUpGroups {
            guard let found = lookup() else {
                if enrolled { return PolicyDecision(outcome: .code, rule: .enrolled) }
                return PolicyDecision(outcome: .unknownUser, rule: .unknownUser)
            }
            membership = found
        }
        if let group = membership?.firstGroup(in: requireGroups) {
            if enrolled { return PolicyDecision(outcome: .code, rule: .requireGroup, detail: group) }
            return PolicyDecision(outcome: .required, rule: .requireGroup, detail: group, message:
                "Two-factor authentication is required for members of \(group) but is not set up for this account. "
                + Self.enableInstruction)
        }
        if let group = membership?.firstGroup(in: exemptGroups) {
            return PolicyDecision(outcome: .exempt, rule: .exemptGroup, detail: group)
        }
        if let network = exemptNetwork(remoteHost) {
            return PolicyDecision(outcome: .exempt, rule: .exemptNetwork, detail: network.description)
        }
        if enrolled { return PolicyDecision(outcome: .code, rule: .enrolled) }
        let enforcedBy: String?
        switch enforce {
        case .no: enforcedBy = nil
        case .yes: enforcedBy = "all"
        case .groups: enforcedBy = membership?.firstGroup(in: enforceGroups)
        }
        guard let enforcedBy else { return PolicyDecision(outcome: .waive, rule: .optional) }
        var left: [String] = []
        if let from = enforceFrom, now < from {
            let days = (from - now + 86_399) / 86_400
            left.append("from \(Self.day(from)) (in \(days) day\(days == 1 ? "" : "s"))")
        }
        let loginsLeft = max(0, graceLogins - graceLoginsUsed)
        if left.isEmpty && loginsLeft > 0 {
            left.append("after \(loginsLeft) more login\(loginsLeft == 1 ? "" : "s") without it")
        }
        if left.isEmpty {
            return PolicyDecision(outcome: .required, rule: .enforce, detail: enforcedBy, message:
                "Two-factor authentication is now required for this account but is not set up. " + Self.enableInstruction)
        }
        return PolicyDecision(outcome: .waive, rule: .enforceGrace, detail: enforcedBy, message:
            "Two-factor authentication will be required for this account \(left[0]). "
            + "Set it up now with `twofactor enable`.")
    }

    /// Grace logins are counted once the deadline (if any) has passed.
    /// Whether a decision needs the account's groups (an NSS lookup, which may block).
    public var looksUpGroups: Bool { !requireGroups.isEmpty || !exemptGroups.isEmpty || enforce == .groups }

    public func countsGraceLogins(at now: Int64) -> Bool { enforceFrom.map { now >= $0 } ?? true }

    /// The first exempt network holding `remoteHost`, which must be a literal address.
    public func exemptNetwork(_ remoteHost: String?) -> IPNetwork? {
        guard let remoteHost, let address = IPNetwork.address(remoteHost) else { return nil }
        return exemptNetworks.first { $0.contains(address) }
    }

    static func day(_ time: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(time)))
    }

    /// "2027-01-31" as UTC midnight; nil for anything else.
    public static func parseDay(_ text: String) -> Int64? {
        guard text.count == 10, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }) else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        formatter.isLenient = false
        guard let date = formatter.date(from: text), day(Int64(date.timeIntervalSince1970)) == text else { return nil }
        return Int64(date.timeIntervalSince1970)
    }
}
