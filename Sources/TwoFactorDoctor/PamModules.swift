// What each PAM module answers in the auth phase, for a given person and account. The answers of
// the modules shipped with Debian were measured with pamtester (a `[success=ok ignore=ignore
// default=die]` and a `[success=ok default=bad]` probe per module); modules that check something
// the person does not choose (a group, a file, the time) can answer either way, and a module the
// doctor does not know is assumed to check a credential (and reported).
#if canImport(Glibc)
import Glibc
#endif

/// Who is at the prompt, and the state of the account they try.
public struct Person: Hashable, Sendable {
    public var enrolled: Bool
    public var knowsPassword: Bool
    public var knowsCode: Bool
    /// twofactord gives no answer (stopped, socket gone).
    public var daemonDown = false
    /// The account's password is empty (pam_unix `nullok` lets it in without one).
    public var emptyPassword = false

    public init(enrolled: Bool, knowsPassword: Bool, knowsCode: Bool, daemonDown: Bool = false,
                emptyPassword: Bool = false) {
        self.enrolled = enrolled
        self.knowsPassword = knowsPassword
        self.knowsCode = knowsCode
        self.daemonDown = daemonDown
        self.emptyPassword = emptyPassword
    }
}

/// The program running the stack.
public struct Caller: Sendable {
    public var service: String
    /// The application passes PAM_DISALLOW_NULL_AUTHTOK (sshd with PermitEmptyPasswords no).
    public var disallowNullAuthtok: Bool
    /// getuid() is 0 while the stack runs (sshd, login, pamtester), so pam_rootok succeeds for
    /// everyone; sudo and su run as the invoking user.
    public var runsAsRoot: Bool

    public init(service: String, disallowNullAuthtok: Bool = false, runsAsRoot: Bool? = nil) {
        self.service = service
        self.disallowNullAuthtok = disallowNullAuthtok
        let invoked = ["sudo", "sudo-i", "su", "su-l"]
        self.runsAsRoot = runsAsRoot ?? !invoked.contains(service)
    }
}

/// What PAM_AUTHTOK holds (the person's password, right or wrong, or a code).
public enum Token: Hashable, Sendable {
    case none
    case password(right: Bool)
    case code(right: Bool)
    case passwordAndCode(passwordRight: Bool, codeRight: Bool)
}

/// Why a module answered the way it did, when that matters to a finding.
public enum Behaviour: Hashable, Sendable {
    /// Checked a password or another credential of the person.
    case credential
    /// Succeeds without looking at anything the person typed.
    case alwaysSucceeds
    /// Answers PAM_IGNORE (or nothing that decides).
    case neutral
    /// Succeeds or fails by something the person does not type (a group, a file, the host).
    case conditional
    case denies
    /// pam_unix `nullok` let an empty password in.
    case nullPassword
    /// `use_first_pass` found no PAM_AUTHTOK.
    case noToken
    case twoFactor
    case unknownModule
}

public struct ModuleAnswer: Sendable {
    public var result: PamResult
    public var token: Token
    public var askedCode = false
    public var behaviour: Behaviour
}

enum ModuleCatalog {
    static let passwordModules: Set<String> = [
        "pam_unix", "pam_sss", "pam_ldap", "pam_krb5", "pam_winbind", "pam_userdb", "pam_pwdb",
        "pam_radius_auth", "pam_tacplus", "pam_lsass", "pam_mysql", "pam_pgsql",
    ]
    /// Other second factors: they check something only the person has.
    static let otherFactors: Set<String> = [
        "pam_google_authenticator", "pam_oath", "pam_u2f", "pam_duo", "pam_yubico", "pam_p11",
        "pam_pkcs11", "pam_fprintd", "pam_ssh_agent_auth", "pam_oath_totp",
    ]
    static let alwaysSucceeds: Set<String> = ["pam_permit", "pam_cap", "pam_echo", "pam_debug", "pam_stress", "pam_lastlog"]
    static let neutral: Set<String> = [
        "pam_env", "pam_faildelay", "pam_warn", "pam_group", "pam_mail", "pam_keyinit", "pam_issue",
        "pam_nologin", "pam_systemd_home", "pam_gnome_keyring", "pam_kwallet5", "pam_mount",
    ]
    static let conditional: Set<String> = [
        "pam_succeed_if", "pam_listfile", "pam_exec", "pam_shells", "pam_wheel", "pam_usertype",
        "pam_access", "pam_localuser", "pam_securetty", "pam_time", "pam_tally2",
    ]
    /// No pam_sm_authenticate: libpam answers PAM_MODULE_UNKNOWN for them.
    static let noAuth: Set<String> = [
        "pam_limits", "pam_motd", "pam_loginuid", "pam_selinux", "pam_mkhomedir", "pam_umask",
        "pam_xauth", "pam_namespace", "pam_pwhistory", "pam_systemd", "pam_pwquality", "pam_cracklib",
        "pam_timestamp", "pam_setquota", "pam_filter", "pam_ftp",
    ]

    static func baseName(_ rule: PamRule) -> String {
        var name = rule.moduleName
        if name.hasSuffix(".so") { name.removeLast(3) }
        return name
    }

    static func isKnown(_ rule: PamRule) -> Bool {
        let name = baseName(rule)
        return rule.isTwoFactor || name == "pam_deny" || name == "pam_rootok" || name == "pam_faillock"
            || [passwordModules, otherFactors, alwaysSucceeds, neutral, conditional, noAuth].contains { $0.contains(name) }
    }

    static func isPasswordModule(_ rule: PamRule) -> Bool { passwordModules.contains(baseName(rule)) }

    /// The possible answers of `rule` (more than one when the module decides by something the
    /// doctor cannot know).
    static func answers(_ rule: PamRule, person: Person, caller: Caller, token: Token) -> [ModuleAnswer] {
        if rule.isTwoFactor { return twoFactor(rule, person: person, token: token) }
        let name = baseName(rule)
        func one(_ result: PamResult, _ behaviour: Behaviour, _ newToken: Token? = nil) -> [ModuleAnswer] {
            [ModuleAnswer(result: result, token: newToken ?? token, behaviour: behaviour)]
        }
        if name == "pam_deny" { return one(.authErr, .denies) }
        if name == "pam_rootok" { return caller.runsAsRoot ? one(.success, .alwaysSucceeds) : one(.authErr, .denies) }
        if name == "pam_faillock" {
            if rule.has("authfail") { return one(.authErr, .denies) }
            // preauth and authsucc succeed unless the account is locked.
            return one(.success, .alwaysSucceeds)
        }
        if passwordModules.contains(name) { return password(rule, person: person, caller: caller, token: token) }
        if otherFactors.contains(name) {
            let right = person.knowsPassword && person.knowsCode
            return one(right ? .success : .authErr, .credential)
        }
        if alwaysSucceeds.contains(name) { return one(.success, .alwaysSucceeds) }
        if neutral.contains(name) { return one(.ignore, .neutral) }
        if conditional.contains(name) {
            return [ModuleAnswer(result: .success, token: token, behaviour: .conditional),
                    ModuleAnswer(result: .authErr, token: token, behaviour: .conditional)]
        }
        if noAuth.contains(name) { return one(.moduleUnknown, .neutral) }
        // Unknown: assume it checks a credential that only the legitimate person has.
        return one(person.knowsPassword && person.knowsCode ? .success : .authErr, .unknownModule)
    }

    /// pam_unix and its kind: the password from PAM_AUTHTOK (use_first_pass, try_first_pass) or
    /// from their own prompt, which they store in PAM_AUTHTOK for the modules after them.
    static func password(_ rule: PamRule, person: Person, caller: Caller, token: Token) -> [ModuleAnswer] {
        if rule.has("nullok"), person.emptyPassword, !caller.disallowNullAuthtok {
            return [ModuleAnswer(result: .success, token: token, behaviour: .nullPassword)]
        }
        let useFirst = rule.has("use_first_pass") || rule.has("use_authtok")
        let tryFirst = rule.has("try_first_pass")
        if useFirst || tryFirst {
            switch token {
            case .password(let right):
                if right || useFirst {
                    return [ModuleAnswer(result: right ? .success : .authErr, token: token, behaviour: .credential)]
                }
            case .none:
                if useFirst {
                    return [ModuleAnswer(result: .authtokRecoverErr, token: token, behaviour: .noToken)]
                }
            case .code, .passwordAndCode:
                if useFirst { return [ModuleAnswer(result: .authErr, token: token, behaviour: .credential)] }
            }
        }
        // Its own prompt; what the person types becomes PAM_AUTHTOK.
        return [ModuleAnswer(result: person.knowsPassword ? .success : .authErr,
                             token: .password(right: person.knowsPassword), behaviour: .credential)]
    }

    /// pam_twofactor, by its own option parser (Options.swift, the file the module compiles).
    static func twoFactor(_ rule: PamRule, person: Person, token: Token) -> [ModuleAnswer] {
        let options = TwoFactorOptions(rule.arguments)
        func answer(_ result: PamResult, _ newToken: Token? = nil, asked: Bool = false) -> [ModuleAnswer] {
            [ModuleAnswer(result: result, token: newToken ?? token, askedCode: asked, behaviour: .twoFactor)]
        }
        if person.daemonDown { return answer(options.failOpen ? .ignore : .authinfoUnavail) }
        guard person.enrolled else { return answer(options.require ? .authErr : .ignore) }
        switch options.source {
        case .useFirstPass:
            switch token {
            case .none: return answer(.authErr)
            case .code(let right): return answer(right ? .success : .authErr, asked: true)
            case .password: return answer(.authErr, asked: true)
            case .passwordAndCode(let passwordRight, let codeRight):
                if options.forwardPass {
                    return answer(codeRight ? .success : .authErr, .password(right: passwordRight), asked: true)
                }
                return answer(.authErr, asked: true)
            }
        case .tryFirstPass:
            if case .code(let right) = token { return answer(right ? .success : .authErr, asked: true) }
            if options.forwardPass, case .passwordAndCode(let passwordRight, let codeRight) = token {
                return answer(codeRight ? .success : .authErr, .password(right: passwordRight), asked: true)
            }
        case .prompt:
            break
        }
        if options.forwardPass {
            return answer(person.knowsCode ? .success : .authErr, .password(right: person.knowsPassword), asked: true)
        }
        return answer(person.knowsCode ? .success : .authErr, asked: true)
    }
}

/// pam_twofactor's options as the module reads them.
public struct TwoFactorOptions: Sendable {
    public var require: Bool
    public var failOpen: Bool
    public var forwardPass: Bool
    public enum Source: Sendable { case prompt, useFirstPass, tryFirstPass }
    public var source: Source
    /// `enroll_at_login`: needed on the auth line and on an account line (pam_twofactor(8)).
    public var enrollAtLogin: Bool
    /// What the module would complain about (unknown options, bad values).
    public var complaints: [String]

    public init(_ arguments: [String]) {
        // argv as libpam passes it: C strings that live for the parse.
        let pointers = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(arguments.count, 1))
        for (index, argument) in arguments.enumerated() { pointers[index] = UnsafePointer(strdup(argument)) }
        defer {
            for index in 0..<arguments.count { free(UnsafeMutablePointer(mutating: pointers[index])) }
            pointers.deallocate()
        }
        var complaints: [String] = []
        let options = Options(argc: Int32(arguments.count), argv: pointers) { argument, problem in
            complaints.append(Options.complaint(argument, problem))
        }
        require = options.require
        failOpen = options.failMode == .open
        forwardPass = options.forwardPass
        enrollAtLogin = options.enrollAtLogin
        switch options.answerSource {
        case .prompt: source = .prompt
        case .useFirstPass: source = .useFirstPass
        case .tryFirstPass: source = .tryFirstPass
        }
        self.complaints = complaints
    }
}
