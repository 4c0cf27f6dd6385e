// `twofactor admin import-google-authenticator`: moves users of pam_google_authenticator over
// without a new QR code. Root reads each user's file (GoogleAuthenticatorFile parses it), checks
// it the way pam_google_authenticator would, and sends its key and state to the daemon in an
// adminEnroll request. Each account succeeds or fails on its own.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

struct AdminImportGoogleAuthenticator: ParsableCommand {
    static let defaultPath = "~/.google_authenticator"
    static let movedAsideSuffix = ".imported-by-twofactor"

    static let configuration = CommandConfiguration(
        commandName: "import-google-authenticator",
        abstract: "Import pam_google_authenticator's secret files, so nobody has to enroll again (root only).",
        discussion: """
            For each USER (or every account on the host with --all), reads the file that \
            pam_google_authenticator uses (--path, default \(defaultPath); ${USER}, ${HOME} and a \
            leading ~ are replaced as in its secret= option) and enables two-factor \
            authentication with the same key, so the user's authenticator app goes on working.

            Carried over: the key, time-based (TOTP) or counter-based (HOTP, with its counter), \
            STEP_SIZE, WINDOW_SIZE (as the account's own window), DISALLOW_REUSE (codes up to \
            the last step used are refused, so a code used with pam_google_authenticator cannot \
            be replayed), and the unused emergency scratch codes, which become the account's \
            recovery codes: each keeps working once, and 'twofactor recovery-codes' makes a new \
            set. Settings without a counterpart are listed (RATE_LIMIT: twofactord locks an \
            account after max_failures wrong codes instead; TIME_SKEW: twofactord learns drift \
            itself).

            Files are refused, per account, when they are readable or writable by group or \
            others (pam_google_authenticator refuses them too), truncated, not a secret file, \
            owned by another user, or a symbolic link pointing out of the home directory; the \
            other accounts are still imported. Users who already use twofactor are skipped \
            unless --replace is given. --dry-run reports what would happen and changes nothing. \
            The files are left in place unless --move-aside is given: each file imported is \
            then renamed to FILE\(movedAsideSuffix), mode 0600.

            Exit status 1 when any account failed; skipped accounts do not count.

            \(ExitStatusHelp.table)

            EXAMPLES
              sudo twofactor admin import-google-authenticator --all --dry-run
              sudo twofactor admin import-google-authenticator alice bob
              sudo twofactor admin import-google-authenticator --all --path '/var/lib/ga/${USER}' --move-aside
            """
    )

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Login names to import.") var users: [String] = []
    @Flag(help: "Every account on the host that has such a file.") var all = false
    @Option(help: ArgumentHelp("Where the files are (${USER}, ${HOME}, ~).", valueName: "template"))
    var path: String = AdminImportGoogleAuthenticator.defaultPath
    @Flag(name: .customLong("dry-run"), help: "Report what would be imported; change nothing.") var dryRun = false
    @Flag(help: "Replace the enrollment of users who already use twofactor.") var replace = false
    @Flag(name: .customLong("move-aside"), help: "Rename each imported file to FILE\(movedAsideSuffix) (mode 0600).")
    var moveAside = false

    func validate() throws {
        if all == !users.isEmpty { throw ValidationError("give user names or --all (not both)") }
        for user in users { try validateUserName(user) }
        if path.isEmpty { throw ValidationError("--path is empty") }
        if dryRun && moveAside { throw ValidationError("--move-aside does nothing with --dry-run") }
    }

    func run() throws {
        try requireRoot("twofactor admin import-google-authenticator")
        let client = global.client
        var reports: [ImportReport] = []
        let accounts: [(String, SystemUser?)] = all
            ? SystemUser.all().map { ($0.name, $0) }
            : users.map { ($0, SystemUser.named($0)) }
        for (name, systemUser) in accounts {
            guard let systemUser else {
                reports.append(ImportReport(user: name, path: nil, result: .failed, message: "no such user"))
                continue
            }
            var report = importOne(systemUser, client: client)
            // With --all, accounts without a file are not news; a named user's missing file is a failure.
            if report.result == .noFile {
                if all { continue }
                report.result = .failed
            }
            reports.append(report)
        }
        print(reports: reports)
        if reports.contains(where: { $0.result == .failed }) {
            throw ExitQuietly(status: .failure)
        }
    }

    private func importOne(_ user: SystemUser, client: DaemonClient) -> ImportReport {
        let filePath = GoogleAuthenticatorPath.expand(path, user: user)
        var report = ImportReport(user: user.name, path: filePath, result: .failed, message: "")
        let opened: OpenedSecretFile
        do {
            opened = try OpenedSecretFile(path: filePath, owner: user)
        } catch {
            report.result = error.missing ? .noFile : .failed
            report.message = error.message
            return report
        }
        defer { opened.close() }
        let file: GoogleAuthenticatorFile
        do {
            file = try GoogleAuthenticatorFile(parsing: opened.contents)
        } catch {
            report.message = "\(error)"
            return report
        }
        report.describe(file)
        var request = AdminEnrollRequest(user: user.name, secret: file.secret, kind: file.kind)
        do {
            request.parameters = try OTPParameters(algorithm: .sha1, digits: 6, period: file.stepSize)
        } catch {
            report.message = "\(error)"
            return report
        }
        switch file.kind {
        case .totp:
            request.window = file.totpStepsEitherSide
            request.lastStep = file.lastUsedStep
        case .hotp:
            request.counter = file.hotpCounter
            request.window = file.hotpLookAhead
        }
        request.importedCodes = Array(file.scratchCodes.prefix(GoogleAuthenticatorFile.maxScratchCodes))
        request.replace = replace

        if dryRun {
            let enrolled: Bool
            do {
                enrolled = try client.send(DaemonClient.request(.check, account: .other(user.name))).status == .enrolled
            } catch {
                report.message = error.message
                return report
            }
            if enrolled && !replace {
                report.result = .skipped
                report.message = "already uses twofactor (--replace to overwrite)"
            } else {
                report.result = .wouldImport
                report.message = enrolled ? "would replace the current enrollment" : "would import"
            }
            return report
        }
        do {
            let (_, left) = try request.send(client)
            report.result = .imported
            report.recoveryCodes = left
            report.message = "imported"
        } catch {
            if error.status == .alreadyEnrolled {
                report.result = .skipped
                report.message = "already uses twofactor (--replace to overwrite)"
            } else {
                report.message = error.message
            }
            return report
        }
        if moveAside {
            report.movedTo = opened.moveAside(suffix: Self.movedAsideSuffix, report: &report)
        }
        return report
    }

    private func print(reports: [ImportReport]) {
        let count = { (result: ImportReport.Result) in reports.filter { $0.result == result }.count }
        if global.json {
            JSON.object([
                ("dry_run", .bool(dryRun)),
                ("accounts", .array(reports.map(\.json))),
                ("imported", .int(Int64(count(.imported)))),
                ("would_import", .int(Int64(count(.wouldImport)))),
                ("skipped", .int(Int64(count(.skipped)))),
                ("failed", .int(Int64(count(.failed)))),
            ]).print()
            return
        }
        for report in reports { Swift.print(report.text) }
        var summary = dryRun ? "Dry run, nothing was changed: \(count(.wouldImport)) would be imported"
            : "Imported \(count(.imported))"
        summary += ", skipped \(count(.skipped)), failed \(count(.failed))."
        Swift.print(summary)
        if reports.contains(where: { ($0.scratchCodes ?? 0) > 0 && ($0.result == .imported || $0.result == .wouldImport) }) {
            Swift.print(dryRun ? "Scratch codes would become recovery codes: each would keep working once, like before."
                        : "Imported scratch codes are recovery codes now: each keeps working once, like before.")
        }
    }
}

/// Ends the command with a status after it printed its own report.
struct ExitQuietly: Error {
    let status: ExitStatus
}

/// What happened to one account.
struct ImportReport {
    enum Result: String { case imported, wouldImport = "would-import", skipped, failed, noFile = "no-file" }

    var user: String
    var path: String?
    var result: Result
    var message: String
    var kind: OTPKind?
    var stepSize: Int?
    var window: Int?
    var lastStep: Int64?
    var counter: UInt64?
    var scratchCodes: Int?
    var recoveryCodes: Int?
    var notCarried: [String] = []
    var warnings: [String] = []
    var movedTo: String?

    init(user: String, path: String?, result: Result, message: String) {
        self.user = user
        self.path = path
        self.result = result
        self.message = message
    }

    mutating func describe(_ file: GoogleAuthenticatorFile) {
        kind = file.kind
        stepSize = file.kind == .totp ? file.stepSize : nil
        window = file.kind == .totp ? file.totpStepsEitherSide : file.hotpLookAhead
        lastStep = file.kind == .totp ? file.lastUsedStep : nil
        counter = file.hotpCounter
        scratchCodes = min(file.scratchCodes.count, GoogleAuthenticatorFile.maxScratchCodes)
        if let attempts = file.rateLimitAttempts, let seconds = file.rateLimitSeconds {
            notCarried.append("RATE_LIMIT \(attempts) \(seconds): no per-account limit; twofactord locks an account after max_failures wrong codes in a row")
        }
        if let skew = file.timeSkew { notCarried.append("TIME_SKEW \(skew): twofactord learns each account's drift itself") }
        if file.kind == .totp && file.usedSteps == nil {
            notCarried.append("reuse was allowed (no DISALLOW_REUSE): twofactor always refuses a used code")
        }
        if file.scratchCodes.count > GoogleAuthenticatorFile.maxScratchCodes {
            notCarried.append("\(file.scratchCodes.count - GoogleAuthenticatorFile.maxScratchCodes) scratch codes beyond the first \(GoogleAuthenticatorFile.maxScratchCodes)")
        }
        for option in file.otherOptions { notCarried.append("\(option): unknown to twofactor") }
    }

    var json: JSON {
        .object([
            ("user", .string(user)),
            ("path", .optionalString(path)),
            ("result", .string(result.rawValue)),
            ("message", .string(message)),
            ("type", .optionalString(kind?.rawValue)),
            ("step_size", .optionalInt(stepSize)),
            ("window", .optionalInt(window)),
            ("last_used_step", .optionalInt(lastStep)),
            ("counter", counter.map { .int(Int64(clamping: $0)) } ?? .null),
            ("scratch_codes", .optionalInt(scratchCodes)),
            ("recovery_codes", .optionalInt(recoveryCodes)),
            ("not_carried", .array(notCarried.map(JSON.string))),
            ("moved_to", .optionalString(movedTo)),
            ("warnings", .array(warnings.map(JSON.string))),
        ])
    }

    var text: String {
        let name = printable(user)
        let source = path.map { " (\(printable($0)))" } ?? ""
        guard result == .imported || result == .wouldImport, let kind else {
            return "\(name)\(source): \(result.rawValue): \(message)"
        }
        var out = "\(name)\(source): \(message): "
        switch kind {
        case .totp:
            out += "time-based, \(stepSize ?? 30) s steps, \(window ?? 1) step(s) either side"
            if let lastStep { out += ", codes up to step \(lastStep) refused as used" }
        case .hotp:
            out += "counter-based, next counter \(counter ?? 0), \(window ?? 0) counter(s) look-ahead"
        }
        let codes = scratchCodes ?? 0
        out += "; \(codes) scratch code\(codes == 1 ? "" : "s") as recovery codes (each works once)"
        for item in notCarried { out += "\n    not carried over: \(item)" }
        if let movedTo { out += "\n    file moved to \(printable(movedTo))" }
        for item in warnings { out += "\n    warning: \(item)" }
        return out
    }
}

/// A passwd entry the import works on.
struct SystemUser {
    var name: String
    var uid: uid_t
    var home: String

    static func named(_ name: String) -> SystemUser? {
        guard let entry = getpwnam(name) else { return nil }
        return SystemUser(entry.pointee)
    }

    /// Every passwd entry (NSS), in order, each name once.
    static func all() -> [SystemUser] {
        var users: [SystemUser] = []
        var seen = Set<String>()
        setpwent()
        while let entry = getpwent() {
            if let user = SystemUser(entry.pointee), seen.insert(user.name).inserted { users.append(user) }
        }
        endpwent()
        return users
    }

    init?(_ entry: passwd) {
        guard let name = entry.pw_name.flatMap({ String(validatingCString: $0) }),
              let home = entry.pw_dir.flatMap({ String(validatingCString: $0) }) else { return nil }
        self.name = name
        self.uid = entry.pw_uid
        self.home = home
    }
}

enum GoogleAuthenticatorPath {
    /// ${USER}, ${HOME} and a leading ~ (alone or before /), like pam_google_authenticator's secret=.
    static func expand(_ template: String, user: SystemUser) -> String {
        var path = template
        if path == "~" || path.hasPrefix("~/") { path = "${HOME}" + path.dropFirst() }
        return path.replacingAll("${USER}", with: user.name).replacingAll("${HOME}", with: user.home)
    }
}

extension String {
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        var out = ""
        var rest = Substring(self)
        while !rest.isEmpty {
            if rest.hasPrefix(target) {
                out += replacement
                rest = rest.dropFirst(target.count)
            } else {
                out.append(rest.removeFirst())
            }
        }
        return out
    }
}

struct SecretFileProblem: Error {
    var message: String
    var missing = false
}

/// A user's secret file opened safely by root: no symlink out of the home, no following of a
/// symlink at the last step, a regular file of the user's own, not readable by others. The
/// directory is opened once, and the file is read and later renamed relative to it, so swapping
/// a directory on the path in between cannot make root rename something elsewhere.
struct OpenedSecretFile {
    let path: String
    let directory: Int32
    let name: String
    let descriptor: Int32
    let identity: (dev_t, ino_t)
    let contents: [UInt8]

    init(path: String, owner: SystemUser) throws(SecretFileProblem) {
        self.path = path
        let slash = path.lastIndex(of: "/")
        let parent = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !name.isEmpty else { throw SecretFileProblem(message: "\(path) names a directory: not a secret file") }
        let directory = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else {
            let missing = errno == ENOENT
            throw SecretFileProblem(message: missing ? "no file at \(path)" : "cannot open \(parent): \(Self.errorText())", missing: missing)
        }
        self.directory = directory
        do {
            (descriptor, identity, contents) = try Self.read(name: name, in: directory, path: path, owner: owner)
        } catch {
            Glibc.close(directory)
            throw error
        }
    }

    private static func read(name: String, in directory: Int32, path: String,
                             owner: SystemUser) throws(SecretFileProblem) -> (Int32, (dev_t, ino_t), [UInt8]) {
        var link = stat()
        guard fstatat(directory, name, &link, AT_SYMLINK_NOFOLLOW) == 0 else {
            let missing = errno == ENOENT
            throw SecretFileProblem(message: missing ? "no file at \(path)" : "cannot read \(path): \(errorText())", missing: missing)
        }
        var fd: Int32
        var target = path
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY
        if (link.st_mode & S_IFMT) == S_IFLNK {
            guard let resolved = realPath(path) else {
                throw SecretFileProblem(message: "\(path) is a symbolic link that leads nowhere")
            }
            let home = realPath(owner.home) ?? owner.home
            guard resolved.hasPrefix(home.hasSuffix("/") ? home : home + "/") else {
                throw SecretFileProblem(message: "\(path) is a symbolic link pointing out of the home directory (to \(resolved))")
            }
            target = resolved
            fd = open(resolved, flags)
        } else {
            fd = openat(directory, name, flags)
        }
        guard fd >= 0 else { throw SecretFileProblem(message: "cannot open \(target): \(errorText())") }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(fd)
            throw SecretFileProblem(message: "\(target) is not a regular file: not a secret file")
        }
        guard info.st_uid == owner.uid else {
            Glibc.close(fd)
            throw SecretFileProblem(message: "\(target) is owned by another user (uid \(info.st_uid)), not \(owner.name)")
        }
        guard info.st_mode & 0o077 == 0 else {
            Glibc.close(fd)
            throw SecretFileProblem(message: "\(target) is readable or writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8))); pam_google_authenticator refuses it too: chmod 600 it, check that the key was not copied, and import again")
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= GoogleAuthenticatorFile.maxSize {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                Glibc.close(fd)
                throw SecretFileProblem(message: "cannot read \(target): \(errorText())")
            }
            if count == 0 { break }
            bytes += buffer[0..<count]
        }
        ConstantTime.zero(&buffer)
        // What the name in the directory was: a symlink's own inode, or the file's.
        return (fd, (link.st_dev, link.st_ino), bytes)
    }

    func close() {
        Glibc.close(descriptor)
        Glibc.close(directory)
    }

    /// Renames the file (or the symlink to it) to NAME + suffix in the same directory, the file
    /// mode 0600; its new path, or nil (the report's warnings say why).
    func moveAside(suffix: String, report: inout ImportReport) -> String? {
        let destination = name + suffix
        var existing = stat()
        if fstatat(directory, destination, &existing, AT_SYMLINK_NOFOLLOW) == 0 {
            report.warnings.append("the file was not moved aside: \(path + suffix) exists")
            return nil
        }
        var now = stat()
        guard fstatat(directory, name, &now, AT_SYMLINK_NOFOLLOW) == 0, now.st_dev == identity.0, now.st_ino == identity.1 else {
            report.warnings.append("the file was not moved aside: \(path) changed during the import")
            return nil
        }
        guard fchmod(descriptor, 0o600) == 0, renameat(directory, name, directory, destination) == 0 else {
            report.warnings.append("the file was not moved aside: \(Self.errorText())")
            return nil
        }
        return path + suffix
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
