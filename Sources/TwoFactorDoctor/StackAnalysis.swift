// One PAM stack judged for the people who may stand at its prompt: the owner of an enrolled
// account and of one without two-factor authentication, each with the password and the code, with
// only one of them, and with nothing. A stack protects an entry point when the enrolled owner is
// asked for the code, gets in with it, and nobody gets in without it.

public struct StackVerdict: Sendable {
    public var service: String
    public var file: String
    public var hasTwoFactor: Bool
    /// The enrolled owner is asked for the code on every way in.
    public var asksCode: Bool
    /// The enrolled owner gets in with the password and the code.
    public var ownerGetsIn: Bool
    /// Someone with the password but not the code gets in (enrolled account).
    public var passwordAlone: Bool
    /// The code alone gets in, no password (right for sshd after a key, nowhere else).
    public var codeAlone: Bool
    /// Someone who types nothing gets in (either account).
    public var nothing: Bool
    /// An account without two-factor authentication: "password", "refused", "nothing".
    public var unenrolled: String
    /// pam_twofactor has `require` on the way in.
    public var requiresEnrollment: Bool
    public var findings: [Finding]

    /// What a person sees, for the report.
    public var summary: String {
        guard hasTwoFactor else { return "not protected: pam_twofactor is not in the auth stack" }
        var parts: [String] = []
        parts.append(asksCode && ownerGetsIn ? "enrolled accounts: password and code" :
                     ownerGetsIn ? "enrolled accounts: not always asked for the code" : "enrolled accounts: cannot log in")
        if codeAlone && !passwordAlone { parts[0] = asksCode ? "enrolled accounts: the code only (no password in this stack)" : parts[0] }
        switch unenrolled {
        case "refused": parts.append("accounts without 2FA: refused (require)")
        case "nothing": parts.append("accounts without 2FA: let in on nothing")
        default: parts.append("accounts without 2FA: \(unenrolled)")
        }
        return parts.joined(separator: "; ")
    }
}

public struct StackAnalysis {
    /// How badly a missing pam_twofactor counts for this entry point.
    public var missingSeverity: Severity
    /// Accounts whose password is empty (from the shadow file), for `nullok`; nil when the
    /// shadow file could not be read.
    public var emptyPasswordAccounts: [String]?
    /// The code alone is acceptable (sshd checked a key first); else it is a finding.
    public var codeAloneAccepted: Bool
    /// The application runs pam_authenticate on another PAM handle than pam_setcred (sshd's
    /// keyboard-interactive: a process of its own), so a refusal in pam_setcred counts there.
    public var authenticatesApart: Bool

    public init(missingSeverity: Severity = .hole, emptyPasswordAccounts: [String]? = [], codeAloneAccepted: Bool = false,
                authenticatesApart: Bool = false) {
        self.missingSeverity = missingSeverity
        self.emptyPasswordAccounts = emptyPasswordAccounts
        self.codeAloneAccepted = codeAloneAccepted
        self.authenticatesApart = authenticatesApart
    }

    /// `account`: the service's account stack, for enrollment at login (nil: not checked).
    public func judge(_ stack: PamStack, caller: Caller, account: PamStack? = nil) -> StackVerdict {
        let area = "pam:\(stack.service)"
        var findings: [Finding] = stack.problems.map {
            Finding(.warning, area: area, check: "pam.syntax", title: "a line libpam cannot use", detail: $0,
                    fix: "correct the line; libpam fails a stack with a bad line, which locks everyone out of \(stack.service)")
        }
        func run(_ person: Person) -> [PamPath] { PamDispatch.paths(stack, person: person, caller: caller) }
        let owner = run(Person(enrolled: true, knowsPassword: true, knowsCode: true))
        let withoutCode = run(Person(enrolled: true, knowsPassword: true, knowsCode: false))
        let codeOnly = run(Person(enrolled: true, knowsPassword: false, knowsCode: true))
        let enrolledNothing = run(Person(enrolled: true, knowsPassword: false, knowsCode: false))
        let unenrolledPassword = run(Person(enrolled: false, knowsPassword: true, knowsCode: false))
        let unenrolledNothing = run(Person(enrolled: false, knowsPassword: false, knowsCode: false))
        let daemonDown = run(Person(enrolled: true, knowsPassword: true, knowsCode: false, daemonDown: true))
        let emptyPassword = run(Person(enrolled: false, knowsPassword: false, knowsCode: false, emptyPassword: true))

        let ourRules = stack.twoFactorRules
        let ownerPaths = owner.filter(\.succeeded)
        var verdict = StackVerdict(
            service: stack.service, file: stack.file, hasTwoFactor: !ourRules.isEmpty,
            asksCode: !ownerPaths.isEmpty && ownerPaths.allSatisfy(\.askedCode),
            ownerGetsIn: !ownerPaths.isEmpty,
            passwordAlone: withoutCode.contains(where: \.succeeded),
            codeAlone: codeOnly.contains(where: \.succeeded),
            nothing: enrolledNothing.contains(where: \.succeeded) || unenrolledNothing.contains(where: \.succeeded),
            unenrolled: unenrolledNothing.contains(where: \.succeeded) ? "nothing" :
                unenrolledPassword.contains(where: \.succeeded) ? "password" : "refused",
            requiresEnrollment: ourRules.contains { TwoFactorOptions($0.arguments).require },
            findings: [])

        for rule in ourRules {
            for complaint in TwoFactorOptions(rule.arguments).complaints {
                findings.append(Finding(.warning, area: area, check: "pam.option",
                                        title: "pam_twofactor ignores an option at \(rule.location)", detail: complaint,
                                        fix: "see pam_twofactor(8) for the options"))
            }
        }
        for rule in stack.rules where !ModuleCatalog.isKnown(rule) {
            findings.append(Finding(.info, area: area, check: "pam.unknown-module",
                                    title: "unknown module \(rule.moduleName) at \(rule.location)",
                                    detail: "the doctor assumed it succeeds only for someone who knows every credential; check what it does"))
        }

        guard verdict.hasTwoFactor else {
            let explanation = verdict.nothing ? "The stack lets a login in on nothing at all." :
                "A login needs only what the stack checks now (the password), never a code."
            findings.append(Finding(missingSeverity, area: area, check: "pam.missing",
                                    title: "\(stack.service): pam_twofactor is not in the auth stack (\(stack.file))",
                                    detail: explanation,
                                    fix: "add `auth required pam_twofactor.so` after `@include common-auth` in \(stack.file)"))
            verdict.findings = findings
            return verdict
        }

        if let path = withoutCode.first(where: \.succeeded) {
            findings.append(Finding(.hole, area: area, check: "pam.skips-code",
                                    title: "\(stack.service): the password alone logs in to an enrolled account",
                                    detail: explain(path, stack: stack), fix: fixFor(path)))
        }
        if let path = (enrolledNothing + unenrolledNothing).first(where: \.succeeded) {
            findings.append(Finding(.hole, area: area, check: "pam.succeeds-on-nothing",
                                    title: "\(stack.service): the stack succeeds on nothing (no password, no code)",
                                    detail: explain(path, stack: stack), fix: fixFor(path)))
        }
        if verdict.codeAlone && !verdict.passwordAlone && !codeAloneAccepted {
            findings.append(Finding(.warning, area: area, check: "pam.code-alone",
                                    title: "\(stack.service): the code alone logs in; no password is checked",
                                    detail: "This stack only suits sshd after a key (AuthenticationMethods publickey,keyboard-interactive).",
                                    fix: "put `@include common-auth` before pam_twofactor in \(stack.file)"))
        }
        if !verdict.ownerGetsIn {
            var detail = "The owner of an enrolled account is refused even with the right password and code."
            if let path = owner.first { detail += " " + explainFailure(path) }
            findings.append(Finding(.warning, area: area, check: "pam.lockout",
                                    title: "\(stack.service): nobody with two-factor authentication can log in",
                                    detail: detail,
                                    fix: "keep a root session open and correct \(stack.file); compare with the shipped examples (pam.d/*.example)"))
        } else if !verdict.asksCode && !verdict.passwordAlone {
            findings.append(Finding(.warning, area: area, check: "pam.code-not-asked",
                                    title: "\(stack.service): enrolled accounts are not always asked for the code", detail: ""))
        }
        // use_first_pass (or use_authtok) reached with nothing in PAM_AUTHTOK.
        var reported = Set<String>()
        for path in owner {
            for (index, step) in path.steps.enumerated() {
                let options = step.rule.isTwoFactor ? TwoFactorOptions(step.rule.arguments) : nil
                let before = index > 0 ? path.steps[index - 1].answer.token : Token.none
                let noToken = step.answer.behaviour == .noToken || (options?.source == .useFirstPass && before == .none)
                // Our module needs a code there (or password+code with forward_pass), not a password.
                let onlyPassword: Bool
                if let options, options.source == .useFirstPass, !options.forwardPass, case .password = before {
                    onlyPassword = true
                } else {
                    onlyPassword = false
                }
                guard noToken || onlyPassword, reported.insert(step.rule.location.description).inserted else { continue }
                let why = noToken ? "none before it sets one" : "the only one before it holds the password, never a code"
                findings.append(Finding(.warning, area: area, check: "pam.use-first-pass",
                                        title: "\(stack.service): use_first_pass without a module that sets the token",
                                        detail: "\(step.rule.label) takes PAM_AUTHTOK from an earlier module, but \(why), so it always fails.",
                                        fix: "remove use_first_pass (the module then asks), or put the module that asks before it"))
            }
        }
        if daemonDown.contains(where: \.succeeded) && !verdict.passwordAlone {
            findings.append(Finding(.warning, area: area, check: "pam.failmode-open",
                                    title: "\(stack.service): while twofactord is down, the password alone logs in (failmode=open)",
                                    detail: "pam_twofactor answers PAM_IGNORE when no daemon exists, and the rest of the stack decides.",
                                    fix: "drop failmode=open (failmode=secure is the default) unless a lockout while the daemon is down is worse"))
        }
        if !verdict.nothing, emptyPassword.contains(where: \.succeeded) {
            let nullokRules = stack.rules.filter { $0.has("nullok") }.map(\.label).joined(separator: ", ")
            let empty = emptyPasswordAccounts ?? []
            let severity: Severity = empty.isEmpty ? .info : .hole
            var detail = "\(nullokRules): an account whose password is empty passes with no password; without two-factor authentication it logs in on nothing."
            if emptyPasswordAccounts == nil {
                detail += " The shadow file could not be read, so whether such an account exists was not checked."
            } else {
                detail += empty.isEmpty ? " No account has an empty password now." :
                    " Accounts with an empty password now: \(empty.joined(separator: ", "))."
            }
            findings.append(Finding(severity, area: area, check: "pam.nullok",
                                    title: "\(stack.service): nullok lets an empty password in", detail: detail,
                                    fix: "remove nullok from pam_unix (common-auth: run `pam-auth-update` or edit the line), or give those accounts a password"))
        }
        if let account {
            findings += enrollmentAtLogin(auth: stack, account: account)
        }
        switch verdict.unenrolled {
        case "refused":
            findings.append(Finding(.info, area: area, check: "pam.require",
                                    title: "\(stack.service): accounts without two-factor authentication are refused (require)"))
        case "password":
            findings.append(Finding(.info, area: area, check: "pam.unenrolled-password",
                                    title: "\(stack.service): accounts without two-factor authentication log in with the password alone",
                                    detail: "pam_twofactor answers PAM_IGNORE for them (no `require`)."))
        default:
            break
        }
        if findings.allSatisfy({ $0.severity <= .info }) {
            findings.insert(Finding(.ok, area: area, check: "pam.protected",
                                    title: "\(stack.service): \(verdict.summary)"), at: 0)
        }
        verdict.findings = findings
        return verdict
    }

    /// Enrollment at login takes two lines: the auth line lets an account that must enroll past
    /// the password (PAM_IGNORE), and an account line enrolls it. With the auth line alone, the
    /// module refuses such an account in pam_setcred, but libpam judges pam_setcred by the
    /// actions that pam_authenticate's answers chose on the same handle (the chain is frozen),
    /// and for PAM_IGNORE that is "ignore": the password alone logs in. Only where
    /// pam_authenticate ran on another handle (sshd's keyboard-interactive) does the refusal
    /// count, and such accounts are locked out instead. With the account line alone, auth
    /// refuses such an account before enrollment is offered.
    func enrollmentAtLogin(auth: PamStack, account: PamStack) -> [Finding] {
        let area = "pam:\(auth.service)"
        let authLines = auth.twoFactorRules.filter { TwoFactorOptions($0.arguments).enrollAtLogin }
        let accountLines = account.twoFactorRules.filter { TwoFactorOptions($0.arguments).enrollAtLogin }
        let fix = "add `account required pam_twofactor.so enroll_at_login` after `@include common-account` in \(auth.file) (see pam.d/sshd-enroll-at-login.example), or remove enroll_at_login from the auth line (such accounts are then refused)"
        if let line = authLines.first, accountLines.isEmpty {
            let missing = "\(line.label) lets an account that the login policy requires but that has not enrolled past auth (PAM_IGNORE) for an account line to enroll it, and no `account ... pam_twofactor.so enroll_at_login` line is in the account stack."
            if authenticatesApart {
                return [Finding(.warning, area: area, check: "pam.enroll-at-login-account",
                                title: "\(auth.service): accounts that must enroll are refused, never enrolled",
                                detail: missing + " The module then refuses them in pam_setcred (sshd runs the auth phase apart, so that refusal counts).",
                                fix: fix)]
            }
            return [Finding(.hole, area: area, check: "pam.enroll-at-login-account",
                            title: "\(auth.service): an account that must enroll logs in with the password alone",
                            detail: missing + " Enforcement lapses: the module's refusal in pam_setcred is logged but does not count, because libpam judges pam_setcred by the answers pam_authenticate gave on the same handle.",
                            fix: fix)]
        }
        if let line = accountLines.first, authLines.isEmpty, !auth.twoFactorRules.isEmpty {
            return [Finding(.info, area: area, check: "pam.enroll-at-login-auth",
                            title: "\(auth.service): enrollment at login is never offered",
                            detail: "\(line.label) would enroll, but the auth line has no enroll_at_login, so auth refuses an account that must enroll before the account phase.",
                            fix: "add enroll_at_login to the auth line of pam_twofactor as well")]
        }
        return []
    }

    /// How a login got in without the code, in terms of the rules that did it.
    func explain(_ path: PamPath, stack: PamStack) -> String {
        var sentences: [String] = []
        let ours = path.twoFactorSteps
        if ours.isEmpty {
            if let done = path.steps.last(where: { $0.action == .done && $0.answer.result == .success }) {
                sentences.append("\(done.rule.label) succeeds first and its control `\(done.rule.control.text)` ends the stack (sufficient / success=done) before pam_twofactor runs.")
            } else if let jump = path.steps.first(where: { if case .jump = $0.action { return true } else { return false } }) {
                sentences.append("\(jump.rule.label) answers \(jump.answer.result.constant) and its control `\(jump.rule.control.text)` jumps over pam_twofactor.")
            } else {
                sentences.append("pam_twofactor is never reached on this path.")
            }
        } else {
            for step in ours where step.answer.result != .success {
                if step.answer.result == .ignore {
                    sentences.append("pam_twofactor (\(step.rule.location)) answers PAM_IGNORE (an account without two-factor authentication, or no daemon with failmode=open).")
                } else {
                    sentences.append("pam_twofactor (\(step.rule.location)) refuses with \(step.answer.result.constant), but its control `\(step.rule.control.text)` does not fail the stack (action \(step.action)).")
                }
            }
        }
        let vouchers = path.steps.filter {
            $0.answer.result == .success && [.alwaysSucceeds, .conditional, .nullPassword].contains($0.answer.behaviour)
                && $0.action != .ignore
        }
        for step in vouchers {
            let how: String
            switch step.answer.behaviour {
            case .conditional: how = "succeeds by a condition the person does not type (\(step.rule.label))"
            case .nullPassword: how = "lets an empty password in (nullok)"
            default: how = "always succeeds"
            }
            sentences.append("\(step.rule.moduleName) (\(step.rule.location)) \(how), and that success carries the stack.")
        }
        let trail = path.steps.map { "\($0.rule.moduleName)=\($0.answer.result.name)->\($0.action)" }.joined(separator: ", ")
        sentences.append("Path: \(trail).")
        return sentences.joined(separator: " ")
    }

    func explainFailure(_ path: PamPath) -> String {
        guard let failing = path.steps.first(where: { [.bad, .die].contains($0.action) }) else {
            return "No module made the stack succeed."
        }
        return "\(failing.rule.label) answers \(failing.answer.result.constant)."
    }

    func fixFor(_ path: PamPath) -> String {
        let ours = path.twoFactorSteps
        if ours.isEmpty {
            if let step = path.steps.last(where: { $0.action == .done }) ?? path.steps.first(where: { if case .jump = $0.action { return true } else { return false } }) {
                return "change the control of \(step.rule.label) so its success neither ends the stack nor jumps past pam_twofactor (Debian's `[success=1 default=ignore]` only jumps over pam_deny), and keep `auth required pam_twofactor.so` after it"
            }
            return "make sure every way through the auth stack reaches `auth required pam_twofactor.so`"
        }
        if ours.contains(where: { $0.answer.result == .ignore }) {
            let vouchers = path.steps.filter { $0.answer.result == .success && $0.answer.behaviour == .alwaysSucceeds }
            let names = vouchers.map(\.rule.label).joined(separator: ", ")
            return (names.isEmpty ? "" : "remove \(names), or ") + "add `require` to pam_twofactor so accounts without two-factor authentication are refused instead of ignored"
        }
        return "use `auth required pam_twofactor.so` (a wrong code must fail the stack)"
    }
}
