// An account's two-factor state as the daemon reports it (status, and each row of admin list),
// and how it is shown to people and programs.
import TwoFactorWire

struct AccountStatus {
    var user: String
    var enrolled: Bool
    var pending: Bool
    var enrolledSince: UInt64?
    var lastUsed: UInt64?
    var recoveryCodesLeft: UInt32?
    var failures: UInt32
    var lockedUntil: UInt64?
    var driftSteps: Int64
    /// "totp" or "hotp" (daemons before HOTP send nothing: totp).
    var kind: String

    init(_ message: WireMessage, user fallbackUser: String) {
        user = message.string(.user) ?? fallbackUser
        enrolled = message.bool(.isEnrolled) ?? false
        pending = message.bool(.pending) ?? false
        enrolledSince = message.uint64(.enrolledSince)
        lastUsed = message.uint64(.lastUsed)
        recoveryCodesLeft = message.uint32(.recoveryCodesLeft)
        failures = message.uint32(.failures) ?? 0
        lockedUntil = message.uint64(.lockedUntil)
        driftSteps = message.int64(.driftSteps) ?? 0
        kind = message.string(.otpKind) ?? "totp"
    }

    /// A lockout in the past is over, whatever the daemon still stores.
    func isLocked(now: UInt64 = TimeText.now()) -> Bool {
        guard let lockedUntil else { return false }
        return lockedUntil > now
    }

    var json: JSON {
        .object([
            ("user", .string(user)),
            ("enrolled", .bool(enrolled)),
            ("pending", .bool(pending)),
            ("enrolled_since", .timestamp(enrolledSince)),
            ("last_used", .timestamp(lastUsed)),
            ("recovery_codes_left", .optionalInt(recoveryCodesLeft)),
            ("failures", .int(Int64(failures))),
            ("locked", .bool(isLocked())),
            ("locked_until", isLocked() ? .timestamp(lockedUntil) : .null),
            ("drift_steps", .int(driftSteps)),
            ("type", enrolled ? .string(kind) : .null),
        ])
    }

    func text(isSelf: Bool) -> String {
        let name = printable(user)
        var out: String
        guard enrolled else {
            out = "Two-factor authentication for \(name): not enabled"
            if pending {
                out += "\n  An enrollment is waiting for confirmation with a code from the app."
            }
            if isSelf { out += "\n  Run 'twofactor enable' to set it up." }
            return out
        }
        out = "Two-factor authentication for \(name): enabled"
        var fields = FieldList()
        if let enrolledSince {
            fields.add("Enabled since", "\(TimeText.absolute(enrolledSince)) (\(TimeText.relative(enrolledSince)))")
        }
        fields.add("Last used", lastUsed.map { "\(TimeText.absolute($0)) (\(TimeText.relative($0)))" } ?? "never")
        if let left = recoveryCodesLeft {
            var value = "\(left)"
            if left <= 2 {
                value += isSelf ? " (run 'twofactor recovery-codes' for a new set)" : " (running low)"
            }
            fields.add("Recovery codes left", value)
        }
        if isLocked(), let lockedUntil {
            fields.add("Locked out", "yes, until \(TimeText.absolute(lockedUntil)) (\(TimeText.relative(lockedUntil)))")
        } else {
            fields.add("Locked out", "no")
        }
        if kind == "hotp" { fields.add("Codes", "counter-based (HOTP)") }
        fields.add("Failed attempts", failures == 0 ? "0" : "\(failures) in a row since the last accepted code")
        if driftSteps != 0 {
            fields.add("Clock drift learned", "\(driftSteps > 0 ? "+" : "")\(driftSteps) step\(abs(driftSteps) == 1 ? "" : "s") of the app's clock")
        }
        out += "\n" + fields.rendered()
        return out
    }

    /// One row of `admin list`.
    var tableRow: [String] {
        let since: String
        if enrolled {
            since = enrolledSince.map(TimeText.absolute) ?? "yes"
        } else {
            since = pending ? "pending" : "no"
        }
        let locked: String
        if isLocked(), let lockedUntil {
            locked = "until \(TimeText.absolute(lockedUntil))"
        } else {
            locked = failures > 0 ? "no (\(failures) failures)" : "no"
        }
        return [
            printable(user),
            since,
            enrolled ? (lastUsed.map(TimeText.absolute) ?? "never") : "-",
            enrolled ? (recoveryCodesLeft.map { String($0) } ?? "?") : "-",
            locked,
        ]
    }
}
