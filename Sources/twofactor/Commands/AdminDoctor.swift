// `twofactor admin doctor`: is every way in asking for the code, and can anyone be locked out?
// Reads the PAM stacks of sshd, sudo, login and su (and --service), sshd's settings from
// `sshd -T`, and the node (module file, daemon, socket, clock, accounts); the judging lives in
// TwoFactorDoctor (PamDispatch models libpam; StackAnalysis and SshdAnalysis say what it means).
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorClient
import TwoFactorCore
// Only the doctor's own names: the library also compiles the module's shared files (Product,
// Wire), whose public names would clash with TwoFactorWire's.
import protocol TwoFactorDoctor.ConfigFiles
import struct TwoFactorDoctor.PamConfig
import enum TwoFactorDoctor.Severity
import struct TwoFactorDoctor.Finding
import struct TwoFactorDoctor.StackAnalysis
import struct TwoFactorDoctor.StackVerdict
import struct TwoFactorDoctor.Caller
import struct TwoFactorDoctor.TwoFactorOptions
import struct TwoFactorDoctor.SshdSettings
import struct TwoFactorDoctor.SshdAnalysis
import TwoFactorWire

struct AdminDoctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check that every login asks for the code and that nobody gets locked out.",
        discussion: """
            Reads this machine's configuration and says, per entry point (the sshd \
            authentication methods in effect, and the sudo, login and su PAM stacks), whether a \
            login is protected and what a person will see, for an account with two-factor \
            authentication and one without. PAM stacks are read as libpam reads them (include, \
            substack, @include, required/requisite/sufficient/optional and [value=action] \
            controls with jumps), sshd's settings come from `sshd -T` (Match blocks applied, \
            with -C for root, the --user and the users and addresses Match blocks name). Then \
            the node: the module file, the daemon, its socket, the clock, the accounts that \
            `require` would lock out, and enrollments whose account no longer exists. Each \
            finding comes with its fix. Run it as root (sshd -T reads the host keys). Changes \
            nothing.

            --root DIR checks the configuration tree under DIR instead (DIR/etc/pam.d, \
            DIR/etc/ssh/sshd_config, DIR/etc/passwd, DIR/etc/shadow); the checks of the live \
            node are skipped, except the daemon's when --socket is given.

            With --json: {"verdict", "exit_status", "root", "entry_points": [{"service", \
            "file", "protected", "summary", "asks_code", "password_alone", "code_alone", \
            "nothing", "unenrolled"}], "sshd": [{"context", "methods": [{"list", "auth"}]}], \
            "findings": [{"severity" (hole, warning, info, ok), \
            "area", "check", "title", "detail", "fix"}]}.

            EXIT STATUS
              0    every entry point is protected (infos only)
              1    warnings (a lockout, a weakness, something not checked)
              2    a hole: a login can succeed without the code (a usage error also exits 2,
                   with the message on standard error and nothing on standard output)

            EXAMPLES
              sudo twofactor admin doctor
              sudo twofactor admin doctor --user alice --service cockpit
              twofactor admin doctor --root /srv/image --json
            """
    )

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Check the configuration tree under this directory instead of /.", valueName: "dir"))
    var root: String?
    @Option(help: ArgumentHelp("Evaluate sshd's Match blocks and the node checks for this account too.", valueName: "name"))
    var user: String?
    @Option(name: .customLong("service"), help: ArgumentHelp("Also check this PAM service (repeatable).", valueName: "name"))
    var services: [String] = []

    func validate() throws {
        if let user { try validateUserName(user) }
        if let root, !root.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        for service in services where service.isEmpty || service.contains("/") {
            throw ValidationError("a service is a file name in /etc/pam.d")
        }
    }

    func run() throws {
        var doctor = Doctor(root: root.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? "",
                            user: user, extraServices: services,
                            client: global.socket != nil || root == nil ? global.client : nil)
        doctor.examine()
        let status = Severity.exitStatus(doctor.findings)
        if global.json {
            doctor.json(exitStatus: status).print()
        } else {
            print(doctor.text(exitStatus: status))
        }
        exitWith(status == 0 ? 0 : status)
    }
}

struct EntryPoint {
    var verdict: StackVerdict
    var protected: Bool
}

struct Doctor {
    /// The PAM services always checked (those missing from the tree are reported as not installed).
    static let entryPointServices = ["sshd", "sudo", "login", "su"]

    let root: String
    let user: String?
    let extraServices: [String]
    /// nil: the daemon is not asked (--root without --socket).
    let client: DaemonClient?
    var findings: [Finding] = []
    var entryPoints: [EntryPoint] = []
    /// sshd's method lists per connection context, and what each runs.
    var sshdMethods: [(context: String, lists: [(methods: String, path: String)])] = []

    var files: TreeFiles { TreeFiles(root: root) }
    var live: Bool { root.isEmpty }

    init(root: String, user: String?, extraServices: [String], client: DaemonClient?) {
        self.root = root
        self.user = user
        self.extraServices = extraServices
        self.client = client
    }

    mutating func examine() {
        let passwd = PasswdEntry.parse(files.read("/etc/passwd") ?? "")
        // nil: no shadow file could be read (not root, or a tree without one).
        let emptyPasswords = files.read("/etc/shadow").map(PasswdEntry.emptyPasswords)
        let sshd = sshdSettings()
        sshdMethods = sshd.map { entry in
            (entry.context, entry.settings.usableLists.map { list in
                (list.joined(separator: ","), SshdAnalysis.pamPath(of: list, settings: entry.settings))
            })
        }
        let pam = PamConfig(files: files)

        // The PAM stacks of the entry points.
        var sshdVerdict: StackVerdict?
        var forwardPass = false
        let names = Doctor.entryPointServices + extraServices.map { $0.lowercased() }
        var seen = Set<String>()
        for name in names where seen.insert(name).inserted {
            let isExtra = !Doctor.entryPointServices.contains(name) || extraServices.contains(name)
            if !isExtra && !pam.exists(name) {
                findings.append(Finding(.info, area: "pam:\(name)", check: "pam.absent",
                                        title: "\(name): no \(pam.path(of: name)); not installed, not checked"))
                continue
            }
            let stack = pam.stack(name)
            let permitEmpty = sshd.first?.settings.permitEmptyPasswords ?? false
            let caller = Caller(service: name, disallowNullAuthtok: name == "sshd" && !permitEmpty)
            let analysis = StackAnalysis(missingSeverity: name == "login" || name == "su" ? .warning : .hole,
                                         emptyPasswordAccounts: emptyPasswords,
                                         codeAloneAccepted: name == "sshd", authenticatesApart: name == "sshd")
            let verdict = analysis.judge(stack, caller: caller, account: pam.stack(name, type: "account"))
            findings += verdict.findings
            let protected = verdict.hasTwoFactor && verdict.asksCode && verdict.ownerGetsIn && !verdict.passwordAlone && !verdict.nothing
            entryPoints.append(EntryPoint(verdict: verdict, protected: protected))
            if name == "sshd" {
                sshdVerdict = verdict
                forwardPass = stack.twoFactorRules.contains { TwoFactorOptions($0.arguments).forwardPass }
            }
        }

        // sshd's methods, per connection context; the same finding for several contexts is one.
        if let sshdVerdict {
            var merged: [(Finding, [String])] = []
            for (context, settings) in sshd {
                for finding in SshdAnalysis.judge(settings, context: "", stack: sshdVerdict, stackHasForwardPass: forwardPass) {
                    if let index = merged.firstIndex(where: { $0.0.check == finding.check && $0.0.title == finding.title }) {
                        merged[index].1.append(context)
                    } else {
                        merged.append((finding, [context]))
                    }
                }
            }
            for (finding, contexts) in merged {
                var finding = finding
                let detail = finding.detail.hasSuffix(" ()") ? String(finding.detail.dropLast(3)) : finding.detail
                finding.detail = detail + " For: " + contexts.joined(separator: "; ") + "."
                findings.append(finding)
            }
            // A method that skips PAM makes sshd unprotected, whatever its stack says.
            if merged.contains(where: { $0.0.severity == .hole }), let index = entryPoints.firstIndex(where: { $0.verdict.service == "sshd" }) {
                entryPoints[index].protected = false
            }
        }

        node(passwd: passwd)
    }

    // MARK: - sshd

    /// `sshd -T` for each connection context: root, --user, and the users and addresses that
    /// Match blocks name (so a Match block that weakens authentication is seen).
    mutating func sshdSettings() -> [(context: String, settings: SshdSettings)] {
        let sshdBinary = "/usr/sbin/sshd"
        let configPath = "/etc/ssh/sshd_config"
        guard let configText = files.read(configPath) else {
            findings.append(Finding(.info, area: "sshd", check: "sshd.absent", title: "sshd: no \(files.hostPath(configPath)); not checked"))
            return []
        }
        guard access(sshdBinary, X_OK) == 0 else {
            findings.append(Finding(.warning, area: "sshd", check: "sshd.not-run",
                                    title: "sshd: \(sshdBinary) is not installed here, so its settings could not be evaluated",
                                    fix: "run the doctor where openssh-server is installed"))
            return []
        }
        // Under --root the Include lines must read the tree's files, not this machine's.
        var config = files.hostPath(configPath)
        var temporary: String?
        if !live {
            let rewritten = configText.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard words.count >= 2, words[0].lowercased() == "include" else { return String(line) }
                return "Include " + words.dropFirst().map { word in
                    word.hasPrefix("/") ? root + word : root + "/etc/ssh/" + word
                }.joined(separator: " ")
            }.joined(separator: "\n")
            temporary = DoctorSystem.temporaryFile(rewritten)
            if let temporary { config = temporary }
        }
        defer { if let temporary { unlink(temporary) } }

        let (users, addresses) = matchCandidates(configText)
        // 192.0.2.1 (TEST-NET-1) stands for any address no Match block names.
        var contexts: [(label: String, spec: String)] = []
        for name in ["root"] + (user.map { [$0] } ?? []) + users {
            for address in ["192.0.2.1"] + addresses where !contexts.contains(where: { $0.label == "user=\(name) addr=\(address)" }) {
                contexts.append(("user=\(name) addr=\(address)", "user=\(name),host=doctor.invalid,addr=\(address)"))
            }
        }
        var out: [(String, SshdSettings)] = []
        for (label, context) in contexts.prefix(40) {
            let result = DoctorSystem.run([sshdBinary, "-T", "-f", config, "-C", context])
            guard result.status == 0 else {
                findings.append(Finding(.warning, area: "sshd", check: "sshd.not-run",
                                        title: "sshd: `sshd -T` failed, so its settings could not be evaluated",
                                        detail: printable(result.errors.split(separator: "\n").prefix(3).joined(separator: " / "), limit: 400),
                                        fix: "run the doctor as root; `sshd -t` shows what is wrong with the configuration"))
                return out
            }
            out.append((label, SshdSettings(sshdOutput: result.output)))
        }
        return out
    }

    /// The literal user names and addresses in Match lines of the config and its Include files.
    func matchCandidates(_ text: String) -> ([String], [String]) {
        var users: [String] = []
        var addresses: [String] = []
        var texts = [text]
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.count >= 2, words[0].lowercased() == "include" else { continue }
            for pattern in words.dropFirst() {
                let full = pattern.hasPrefix("/") ? files.hostPath(pattern) : files.hostPath("/etc/ssh/" + pattern)
                texts += DoctorSystem.glob(full).compactMap(DoctorSystem.readFile)
            }
        }
        for text in texts {
            for line in text.split(separator: "\n") {
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "=" }).map(String.init)
                guard words.first?.lowercased() == "match" else { continue }
                var index = 1
                while index + 1 < words.count {
                    let key = words[index].lowercased()
                    let values = words[index + 1].split(separator: ",").map(String.init)
                        .filter { !$0.hasPrefix("!") && !$0.contains("*") && !$0.contains("?") }
                    if key == "user" { users += values }
                    // A group's first member stands for the group (sshd resolves membership).
                    if key == "group" { users += values.compactMap(firstMember) }
                    if key == "address" { addresses += values.map { String($0.split(separator: "/").first ?? Substring($0)) } }
                    index += 2
                }
            }
        }
        return (users, addresses)
    }

    /// The first member of a group: from the tree's /etc/group, else through NSS.
    func firstMember(of group: String) -> String? {
        for line in (files.read("/etc/group") ?? "").split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 4, fields[0] == group, let first = fields[3].split(separator: ",").first {
                return String(first)
            }
        }
        return PasswdLookup.group(named: group)?.members.first.map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: - the node

    mutating func node(passwd: [PasswdEntry]) {
        let area = "node"
        if live {
            moduleFile()
        } else {
            findings.append(Finding(.info, area: area, check: "node.skipped",
                                    title: "--root: the module file, the daemon and the accounts of this machine are not checked"
                                        + (client != nil ? " (except the daemon at --socket)" : "")))
        }
        guard let client else { return }

        if live, let info = DoctorSystem.fileStatus(client.socketPath) {
            let mode = info.st_mode & 0o7777
            if (info.st_mode & S_IFMT) != S_IFSOCK {
                findings.append(Finding(.warning, area: area, check: "node.socket",
                                        title: "\(client.socketPath) is not a socket"))
            } else if mode & 0o006 != 0o006 {
                findings.append(Finding(.warning, area: area, check: "node.socket-mode",
                                        title: "the daemon's socket has mode \(String(mode, radix: 8)): users cannot run `twofactor enable`",
                                        detail: "The module runs as root and still works; who may do what is decided by the caller's uid, not the mode.",
                                        fix: "use the shipped twofactord.socket (SocketMode=0666)"))
            } else {
                findings.append(Finding(.ok, area: area, check: "node.socket-mode",
                                        title: "the daemon's socket \(client.socketPath) has mode \(String(mode, radix: 8))"))
            }
        }

        let clock: WireMessage
        do {
            clock = try client.send(WireMessage(operation: .clockStatus), account: adminAccount())
        } catch {
            findings.append(Finding(.warning, area: area, check: "node.daemon",
                                    title: "twofactord did not answer at \(client.socketPath)",
                                    detail: error.message + " While it is down, pam_twofactor refuses every login it guards (failmode=secure).",
                                    fix: "systemctl start twofactord (or bash scripts/daemon-service start), and run the doctor as root or a member of the admin group"))
            return
        }
        findings.append(Finding(.ok, area: area, check: "node.daemon", title: "twofactord answers at \(client.socketPath)"))
        let state = clock.string(.clockState) ?? "unknown"
        let remedy = clock.string(.clockRemedy).map { printable($0) } ?? "see `twofactor admin clock`"
        switch state {
        case "ok":
            findings.append(Finding(.ok, area: area, check: "node.clock", title: "the clock: ok"))
        case "warning", "bad":
            findings.append(Finding(.warning, area: area, check: "node.clock",
                                    title: "the clock: \(state); codes from phones may be refused",
                                    detail: printable(clock.string(.message) ?? ""), fix: remedy))
        default:
            findings.append(Finding(.info, area: area, check: "node.clock",
                                    title: "the clock: \(printable(state)) (not measured; `twofactor admin clock`)"))
        }

        let accounts: [AccountStatus]
        do {
            let list = try client.send(WireMessage(operation: .listAccounts), account: adminAccount())
            accounts = try list.allNested(.account).map { AccountStatus($0, user: "?") }
        } catch let error as CLIError {
            findings.append(Finding(.warning, area: area, check: "node.accounts",
                                    title: "the accounts could not be listed", detail: error.message))
            return
        } catch {
            findings.append(Finding(.warning, area: area, check: "node.accounts", title: "the daemon sent a malformed account list"))
            return
        }
        let enrolled = Set(accounts.filter(\.enrolled).map(\.user))

        // Enrollments left behind by userdel: the next account with that name inherits them.
        let known = Set(passwd.map(\.name))
        for account in accounts.sorted(by: { $0.user < $1.user }) {
            let exists = live ? PasswdEntry.exists(account.user) : known.contains(account.user)
            guard !exists else { continue }
            let name = printable(account.user)
            findings.append(Finding(.warning, area: area, check: "node.orphan",
                                    title: "an enrollment for \(name), an account that no longer exists",
                                    detail: "userdel leaves the enrollment behind; a new account later given the name \(name) would inherit it, and its codes would be the old owner's phone's.",
                                    fix: "twofactor admin reset \(name) --yes"))
        }

        // Who `require` would lock out: accounts that can log in but have not enrolled, and
        // enrolled ones without recovery codes (a lost phone then locks them out).
        let requiring = entryPoints.filter { $0.verdict.requiresEnrollment }.map(\.verdict.service)
        let loginAccounts = passwd.filter(\.canLogIn).map(\.name)
        if !requiring.isEmpty {
            let notEnrolled = loginAccounts.filter { !enrolled.contains($0) }
            if !notEnrolled.isEmpty {
                findings.append(Finding(.warning, area: area, check: "node.require-lockout",
                                        title: "\(notEnrolled.count) account(s) would be locked out of \(requiring.joined(separator: ", ")) by `require`: not enrolled",
                                        detail: "Not enrolled: " + notEnrolled.map { printable($0) }.joined(separator: ", ") + ".",
                                        fix: "have each run `twofactor enable` in an existing session before relying on `require` (or remove `require`)"))
            }
        }
        let noCodes = accounts.filter { $0.enrolled && $0.recoveryCodesLeft == 0 }.map(\.user)
        if !noCodes.isEmpty {
            findings.append(Finding(requiring.isEmpty ? .info : .warning, area: area, check: "node.no-recovery-codes",
                                    title: "\(noCodes.count) enrolled account(s) have no recovery codes left",
                                    detail: "A lost phone locks them out: " + noCodes.map { printable($0) }.joined(separator: ", ") + ".",
                                    fix: "each runs `twofactor recovery-codes`"))
        }
        if let user {
            let state = enrolled.contains(user) ? "has two-factor authentication" : "has not enabled two-factor authentication"
            findings.append(Finding(.info, area: area, check: "node.user", title: "\(printable(user)) \(state)"))
        }
    }

    /// The module file each stack names: present, root's, writable by nobody else.
    mutating func moduleFile() {
        var paths: [String] = []
        for entry in entryPoints {
            for rule in PamConfig(files: files).stack(entry.verdict.service).twoFactorRules {
                let candidates = rule.module.hasPrefix("/") ? [rule.module] :
                    ["/usr/lib/x86_64-linux-gnu/security/" + rule.module, "/lib/x86_64-linux-gnu/security/" + rule.module,
                     "/lib/security/" + rule.module]
                let path = candidates.first { DoctorSystem.fileStatus($0) != nil } ?? candidates[0]
                if !paths.contains(path) { paths.append(path) }
            }
        }
        for path in paths {
            guard let info = DoctorSystem.fileStatus(path) else {
                findings.append(Finding(.warning, area: "node", check: "node.module-missing",
                                        title: "the PAM module \(path) does not exist",
                                        detail: "libpam fails every stack that names it: nobody gets in through them.",
                                        fix: "bash scripts/install (or copy pam_twofactor.so to /usr/lib/x86_64-linux-gnu/security/)"))
                continue
            }
            let mode = info.st_mode & 0o7777
            if info.st_uid != 0 || mode & 0o022 != 0 {
                findings.append(Finding(.hole, area: "node", check: "node.module-mode",
                                        title: "the PAM module \(path) can be changed by someone other than root (owner uid \(info.st_uid), mode \(String(mode, radix: 8)))",
                                        detail: "It runs as root inside sshd and sudo.",
                                        fix: "chown root:root \(path); chmod 644 \(path)"))
            } else {
                findings.append(Finding(.ok, area: "node", check: "node.module-mode",
                                        title: "the PAM module \(path): root's, mode \(String(mode, radix: 8))"))
            }
        }
    }

    // MARK: - output

    func json(exitStatus: Int32) -> JSON {
        .object([
            ("verdict", .string(verdictWord(exitStatus))),
            ("exit_status", .int(Int64(exitStatus))),
            ("root", live ? .null : .string(root)),
            ("entry_points", .array(entryPoints.map { entry in
                .object([
                    ("service", .string(entry.verdict.service)),
                    ("file", .string(entry.verdict.file)),
                    ("protected", .bool(entry.protected)),
                    ("summary", .string(entry.verdict.summary)),
                    ("asks_code", .bool(entry.verdict.asksCode)),
                    ("password_alone", .bool(entry.verdict.passwordAlone)),
                    ("code_alone", .bool(entry.verdict.codeAlone)),
                    ("nothing", .bool(entry.verdict.nothing)),
                    ("unenrolled", .string(entry.verdict.unenrolled)),
                ])
            })),
            ("sshd", .array(sshdMethods.map { context in
                .object([
                    ("context", .string(context.context)),
                    ("methods", .array(context.lists.map { .object([("list", .string($0.methods)), ("auth", .string($0.path))]) })),
                ])
            })),
            ("findings", .array(sorted.map { finding in
                .object([
                    ("severity", .string(finding.severity.name)),
                    ("area", .string(finding.area)),
                    ("check", .string(finding.check)),
                    ("title", .string(finding.title)),
                    ("detail", .string(finding.detail)),
                    ("fix", .optionalString(finding.fix)),
                ])
            })),
        ])
    }

    var sorted: [Finding] {
        findings.enumerated().sorted { a, b in
            a.element.severity != b.element.severity ? a.element.severity > b.element.severity : a.offset < b.offset
        }.map(\.element)
    }

    func verdictWord(_ status: Int32) -> String {
        switch status {
        case 0: return "protected"
        case 1: return "warnings"
        default: return "hole"
        }
    }

    func text(exitStatus: Int32) -> String {
        var out: [String] = []
        let holes = findings.filter { $0.severity == .hole }.count
        let warnings = findings.filter { $0.severity == .warning }.count
        let headline: String
        switch exitStatus {
        case 0: headline = "every entry point asks for the code"
        case 1: headline = "\(warnings) warning\(warnings == 1 ? "" : "s"), no hole"
        default: headline = "\(holes) hole\(holes == 1 ? "" : "s"): a login can succeed without the code"
        }
        out.append("twofactor doctor\(live ? "" : " (--root \(printable(root)))"): \(headline)")
        out.append("")
        out.append("Entry points")
        var table = TextTable(header: ["SERVICE", "PROTECTED", "WHAT A PERSON SEES"])
        table.rows = entryPoints.map { [$0.verdict.service, $0.protected ? "yes" : "NO", $0.verdict.summary] }
        out.append(table.rendered().split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        out.append("")
        if !sshdMethods.isEmpty {
            out.append("sshd methods in effect")
            for context in sshdMethods {
                let lists = context.lists.map { "\($0.methods) (\($0.path))" }.joined(separator: "; ")
                out.append("  \(context.context): \(lists.isEmpty ? "none usable" : lists)")
            }
            out.append("")
        }
        out.append("Findings")
        for finding in sorted {
            let label: String
            switch finding.severity {
            case .hole: label = "HOLE   "
            case .warning: label = "WARNING"
            case .info: label = "info   "
            case .ok: label = "ok     "
            }
            out.append("  \(label) \(printable(finding.title))")
            // Messages from the daemon may hold line breaks; one finding stays one paragraph.
            let detail = String(finding.detail.map { $0 == "\n" ? " " : $0 })
            if !detail.isEmpty { out.append("          \(printable(detail))") }
            if let fix = finding.fix { out.append("          Fix: \(printable(fix))") }
        }
        out.append("")
        out.append("Exit status \(exitStatus) (0 protected, 1 warnings, 2 a hole).")
        return out.joined(separator: "\n")
    }
}
