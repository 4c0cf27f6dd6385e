// sshd's authentication as `sshd -T` reports it (Match blocks, Include files and defaults already
// applied by sshd itself): which method lists let a login in, and whether each one reaches the
// PAM auth stack. sshd runs PAM's auth phase only for keyboard-interactive and, with UsePAM, for
// password (whose conversation gives the one password to every prompt); publickey, hostbased and
// gssapi-with-mic never run it.

public struct SshdSettings: Sendable {
    public var values: [String: String]

    /// `sshd -T` prints one "keyword value" per line, keywords in lower case.
    public init(sshdOutput: String) {
        var values: [String: String] = [:]
        for line in sshdOutput.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard let key = parts.first else { continue }
            values[key.lowercased()] = parts.count > 1 ? String(parts[1]) : ""
        }
        self.values = values
    }

    func yes(_ key: String) -> Bool { values[key]?.lowercased() == "yes" }

    public var usePAM: Bool { yes("usepam") }
    public var keyboardInteractive: Bool { yes("kbdinteractiveauthentication") }
    public var password: Bool { yes("passwordauthentication") }
    public var publickey: Bool { yes("pubkeyauthentication") }
    public var hostbased: Bool { yes("hostbasedauthentication") }
    public var gssapi: Bool { yes("gssapiauthentication") }
    public var permitEmptyPasswords: Bool { yes("permitemptypasswords") }

    /// nil for `any`; else each list of methods, without ":submethod".
    public var authenticationMethods: [[String]]? {
        guard let text = values["authenticationmethods"], text.lowercased() != "any", !text.isEmpty else { return nil }
        return text.split(separator: " ").map { list in
            list.split(separator: ",").map { String($0.split(separator: ":").first ?? $0) }
        }
    }

    func enabled(_ method: String) -> Bool {
        switch method {
        case "publickey": return publickey
        case "password": return password
        case "keyboard-interactive": return keyboardInteractive
        case "hostbased": return hostbased
        case "gssapi-with-mic": return gssapi
        default: return false
        }
    }

    /// The method lists a login can complete: AuthenticationMethods, or each enabled method alone.
    public var usableLists: [[String]] {
        if let lists = authenticationMethods { return lists.filter { $0.allSatisfy(enabled) } }
        return ["publickey", "keyboard-interactive", "password", "hostbased", "gssapi-with-mic"].filter(enabled).map { [$0] }
    }
}

public struct SshdAnalysis {
    static let keyMethods: Set<String> = ["publickey", "hostbased", "gssapi-with-mic"]

    /// What a method list runs of PAM's auth phase: "PAM stack" (keyboard-interactive: every
    /// prompt shown), "PAM stack, one answer" (password: the password answers every prompt),
    /// or "no PAM auth".
    public static func pamPath(of list: [String], settings: SshdSettings) -> String {
        guard settings.usePAM else { return "no PAM auth" }
        if list.contains("keyboard-interactive") { return "PAM stack" }
        if list.contains("password") { return "PAM stack, one answer for every prompt" }
        return "no PAM auth"
    }

    /// Findings for one connection (`context` says for whom, as given to sshd -C), judged against
    /// the verdict of sshd's PAM stack.
    public static func judge(_ settings: SshdSettings, context: String, stack: StackVerdict, stackHasForwardPass: Bool) -> [Finding] {
        var findings: [Finding] = []
        let area = "sshd"
        let lists = settings.usableLists
        func add(_ severity: Severity, _ check: String, _ title: String, _ detail: String, _ fix: String?) {
            findings.append(Finding(severity, area: area, check: check, title: title, detail: detail + " (\(context))", fix: fix))
        }
        if lists.isEmpty {
            add(.warning, "sshd.no-method", "sshd: no authentication method can complete a login",
                "AuthenticationMethods names methods that are turned off.", "enable the methods AuthenticationMethods lists")
            return findings
        }
        if !settings.usePAM {
            add(.hole, "sshd.usepam-no", "sshd: UsePAM no, so no login ever reaches pam_twofactor",
                "Every method is checked by sshd alone.", "set `UsePAM yes` and `KbdInteractiveAuthentication yes` in sshd_config")
        }
        if settings.permitEmptyPasswords && settings.password {
            add(.warning, "sshd.permit-empty", "sshd: PermitEmptyPasswords yes",
                "An account with an empty password passes the password step with nothing (pam_unix nullok).",
                "set `PermitEmptyPasswords no`")
        }
        for list in lists {
            let text = list.joined(separator: ",")
            let key = list.contains { keyMethods.contains($0) }
            let kbd = list.contains("keyboard-interactive")
            let pass = list.contains("password")
            let reachesPAM = settings.usePAM && (kbd || pass)
            if !reachesPAM {
                if settings.usePAM {
                    add(.hole, "sshd.publickey-only", "sshd: `\(text)` logs in without PAM's auth phase, so without a code",
                        "A login that completes with \(text) alone never runs pam_twofactor.",
                        "set `AuthenticationMethods publickey,keyboard-interactive` (key, then code) or `keyboard-interactive` (password, then code), and `KbdInteractiveAuthentication yes`")
                }
                continue
            }
            if pass && !kbd && stack.hasTwoFactor && !stackHasForwardPass && stack.ownerGetsIn {
                add(.warning, "sshd.password-method", "sshd: the `password` method cannot show the code prompt",
                    "With `\(text)`, sshd answers every PAM prompt with the one password typed, so enrolled accounts fail there (accounts without 2FA get in with the password).",
                    "set `PasswordAuthentication no` and use keyboard-interactive (`KbdInteractiveAuthentication yes`)")
            }
            if stack.hasTwoFactor && stack.codeAlone && !stack.passwordAlone && !key {
                add(.warning, "sshd.code-only", "sshd: `\(text)` logs in with the code alone",
                    "The sshd PAM stack checks no password, and this method list checks no key.",
                    "use `AuthenticationMethods publickey,keyboard-interactive` with this stack, or add `@include common-auth` before pam_twofactor")
            }
        }
        return findings
    }
}
