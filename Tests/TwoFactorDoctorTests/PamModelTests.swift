import XCTest
@testable import TwoFactorDoctor

/// An in-memory /etc/pam.d.
struct MemoryFiles: ConfigFiles {
    var files: [String: String]
    func read(_ path: String) -> String? { files[path] }
}

/// The repository's files (Debian 12's stock stacks under Tests/fixtures/doctor, pam.d examples).
enum Repository {
    static let root: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/TwoFactorDoctorTests/PamModelTests.swift
        return parts.joined(separator: "/")
    }()

    static func text(_ relative: String) -> String {
        let handle = fopen(root + "/" + relative, "r")!
        defer { fclose(handle) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, handle)
            if count == 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Debian 12's common-* files plus `extra` (name -> text) as /etc/pam.d.
    static func debian(_ extra: [String: String]) -> PamConfig {
        var files: [String: String] = [:]
        for name in ["common-auth", "common-account", "common-password", "common-session", "common-session-noninteractive", "other", "sshd", "sudo", "login", "su"] {
            files["/etc/pam.d/" + name] = text("Tests/fixtures/doctor/debian12/etc/pam.d/" + name)
        }
        for (name, content) in extra { files["/etc/pam.d/" + name] = content }
        return PamConfig(files: MemoryFiles(files: files))
    }
}

final class PamControlTests: XCTestCase {
    func testKeywordsAreLibpamsActionTables() {
        let required = PamControl.keyword("required")!
        XCTAssertEqual(required.action(for: .success), .ok)
        XCTAssertEqual(required.action(for: .ignore), .ignore)
        XCTAssertEqual(required.action(for: .authErr), .bad)
        XCTAssertEqual(PamControl.keyword("requisite")!.action(for: .authErr), .die)
        let sufficient = PamControl.keyword("sufficient")!
        XCTAssertEqual(sufficient.action(for: .success), .done)
        XCTAssertEqual(sufficient.action(for: .authErr), .ignore)
        // optional: PAM_IGNORE falls to the default (ignore), not "ok".
        XCTAssertEqual(PamControl.keyword("optional")!.action(for: .ignore), .ignore)
    }

    func testBracketedDefaultFillsOnlyWhatIsUnsetAndTheRestIsBad() {
        let (control, problems) = PamControl.bracketed("success=1 default=ignore", text: "")
        XCTAssertEqual(problems, [])
        XCTAssertEqual(control.action(for: .success), .jump(1))
        XCTAssertEqual(control.action(for: .authErr), .ignore)
        // default first, then an override: the override wins.
        let (second, _) = PamControl.bracketed("default=die success=ok", text: "")
        XCTAssertEqual(second.action(for: .success), .ok)
        XCTAssertEqual(second.action(for: .userUnknown), .die)
        // No default: every unnamed value is bad.
        let (third, _) = PamControl.bracketed("success=ok ignore=ignore", text: "")
        XCTAssertEqual(third.action(for: .authErr), .bad)
        let (_, bad) = PamControl.bracketed("sucess=ok", text: "")
        XCTAssertEqual(bad.count, 1)
    }

    func testTokensKeepBracketsWithSpacesTogether() {
        XCTAssertEqual(PamConfig.tokens("auth [success=1 default=ignore] pam_x.so [prompt=a b\\] c] x"),
                       ["auth", "[success=1 default=ignore]", "pam_x.so", "[prompt=a b\\] c]", "x"])
        let lines = PamConfig.logicalLines("auth required \\\n pam_permit.so # comment\n")
        XCTAssertEqual(lines.first?.0, 1)
        XCTAssertEqual(PamConfig.tokens(lines.first!.1), ["auth", "required", "pam_permit.so"])
    }

    func testIncludeInlinesAndSubstackNests() {
        let config = PamConfig(files: MemoryFiles(files: [
            "/etc/pam.d/s": "auth include a\nauth substack a\n-auth optional pam_gone.so\n@include a\naccount required pam_permit.so\n",
            "/etc/pam.d/a": "auth required pam_unix.so\nsession required pam_limits.so\n",
        ]))
        let stack = config.stack("S")  // libpam lowercases service names
        XCTAssertEqual(stack.handlers.map(\.level), [0, 0, 1, 0, 0])
        XCTAssertEqual(stack.rules.map(\.moduleName), ["pam_unix.so", "pam_unix.so", "pam_gone.so", "pam_unix.so"])
        guard case .substack = stack.handlers[1].handler else { return XCTFail("no substack marker") }
    }

    func testMissingServiceUsesOtherAndMissingIncludeFails() {
        let config = PamConfig(files: MemoryFiles(files: ["/etc/pam.d/other": "auth include nothere\n"]))
        let stack = config.stack("cockpit")
        XCTAssertEqual(stack.file, "/etc/pam.d/other")
        XCTAssertEqual(stack.problems.count, 1)
        let paths = PamDispatch.paths(stack, person: Person(enrolled: false, knowsPassword: true, knowsCode: true), caller: Caller(service: "cockpit"))
        XCTAssertFalse(paths.contains(where: \.succeeded))
    }

    func testModuleOptionsComeFromTheModulesOwnParser() {
        let options = TwoFactorOptions(["require", "failmode=open", "use_first_pass", "forward_pass", "bogus"])
        XCTAssertTrue(options.require)
        XCTAssertTrue(options.failOpen)
        XCTAssertTrue(options.forwardPass)
        XCTAssertEqual(options.source, .useFirstPass)
        XCTAssertEqual(options.complaints.count, 1)
    }
}

final class PamDispatchTests: XCTestCase {
    let owner = Person(enrolled: true, knowsPassword: true, knowsCode: true)
    let passwordOnly = Person(enrolled: true, knowsPassword: true, knowsCode: false)
    let nobody = Person(enrolled: false, knowsPassword: false, knowsCode: false)

    func succeeds(_ lines: String, _ person: Person, service: String = "svc", extra: [String: String] = [:]) -> Bool {
        let config = Repository.debian(extra.merging([service: lines]) { $1 })
        return PamDispatch.paths(config.stack(service), person: person, caller: Caller(service: service)).contains(where: \.succeeded)
    }

    func testDebianCommonAuthThenTheModule() {
        let stack = "@include common-auth\nauth required pam_twofactor.so\n"
        XCTAssertTrue(succeeds(stack, owner))
        XCTAssertFalse(succeeds(stack, passwordOnly))
        XCTAssertFalse(succeeds(stack, nobody))
        XCTAssertTrue(succeeds(stack, Person(enrolled: false, knowsPassword: true, knowsCode: false)))
    }

    func testAllIgnoredFails() {
        // libpam starts undecided with PAM_PERM_DENIED: a stack of PAM_IGNOREs fails.
        XCTAssertFalse(succeeds("auth required pam_twofactor.so\n", nobody))
        XCTAssertTrue(succeeds("auth required pam_twofactor.so\nauth required pam_permit.so\n", nobody))
    }

    func testSufficientAndJumpsSkipTheCode() {
        XCTAssertTrue(succeeds("auth sufficient pam_unix.so\nauth required pam_twofactor.so\n", passwordOnly))
        XCTAssertTrue(succeeds("auth [success=done default=ignore] pam_unix.so\nauth required pam_twofactor.so\n", passwordOnly))
        XCTAssertTrue(succeeds("auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_twofactor.so\nauth required pam_permit.so\n", passwordOnly))
        // Debian's jump of 1 lands on pam_permit, and pam_twofactor still runs after it.
        XCTAssertFalse(succeeds("auth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_twofactor.so\n", passwordOnly))
    }

    func testDoneAfterAFailureDoesNotSucceed() {
        // A failure already recorded keeps the stack negative even when a later module is "done".
        XCTAssertFalse(succeeds("auth required pam_twofactor.so\nauth sufficient pam_permit.so\n", passwordOnly))
    }

    func testSubstackKeepsDoneToItselfAndCountsAsOneForJumps() {
        let sub = ["tf-first": "auth sufficient pam_unix.so\nauth requisite pam_deny.so\n"]
        XCTAssertTrue(succeeds("auth include tf-first\nauth required pam_twofactor.so\n", passwordOnly, extra: sub))
        XCTAssertFalse(succeeds("auth substack tf-first\nauth required pam_twofactor.so\n", passwordOnly, extra: sub))
        XCTAssertTrue(succeeds("auth substack tf-first\nauth required pam_twofactor.so\n", owner, extra: sub))
        // success=1 jumps over the whole substack, landing on pam_permit.
        let jump = "auth [success=1 default=die] pam_unix.so\nauth substack tf-deny\nauth required pam_permit.so\n"
        XCTAssertTrue(succeeds(jump, passwordOnly, extra: ["tf-deny": "auth required pam_deny.so\nauth required pam_deny.so\n"]))
    }

    func testDieInASubstackOnlyEndsTheSubstackButTheFailureStays() {
        let sub = ["tf-die": "auth requisite pam_deny.so\n"]
        XCTAssertFalse(succeeds("auth substack tf-die\nauth required pam_permit.so\n", owner, extra: sub))
    }

    func testResetForgetsWhatTheSubstackDecided() {
        let sub = ["tf-reset": "auth required pam_deny.so\nauth [default=reset] pam_deny.so\n"]
        XCTAssertTrue(succeeds("auth required pam_permit.so\nauth substack tf-reset\n", owner, extra: sub))
    }

    func testRootokSucceedsInsideDaemonsRunAsRootOnly() {
        let stack = "auth sufficient pam_rootok.so\n@include common-auth\nauth required pam_twofactor.so\n"
        XCTAssertTrue(succeeds(stack, nobody, service: "sshd"))
        XCTAssertFalse(succeeds(stack, nobody, service: "su"))
    }

    func testUseFirstPassWithoutATokenFails() {
        XCTAssertFalse(succeeds("auth required pam_unix.so use_first_pass\nauth required pam_twofactor.so\n", owner))
        // The one-prompt stack: the module hands the password on.
        XCTAssertTrue(succeeds("auth requisite pam_twofactor.so forward_pass\nauth required pam_unix.so try_first_pass\n", owner))
        XCTAssertFalse(succeeds("auth requisite pam_twofactor.so forward_pass\nauth required pam_unix.so use_first_pass\n",
                                Person(enrolled: true, knowsPassword: false, knowsCode: true)))
    }

    func testNullokOnlyWithoutDisallowNullAuthtok() {
        let config = Repository.debian(["svc": "@include common-auth\nauth required pam_twofactor.so\n"])
        let empty = Person(enrolled: false, knowsPassword: false, knowsCode: false, emptyPassword: true)
        XCTAssertTrue(PamDispatch.paths(config.stack("svc"), person: empty, caller: Caller(service: "svc")).contains(where: \.succeeded))
        XCTAssertFalse(PamDispatch.paths(config.stack("svc"), person: empty,
                                         caller: Caller(service: "svc", disallowNullAuthtok: true)).contains(where: \.succeeded))
    }
}

final class StackAnalysisTests: XCTestCase {
    func verdict(_ lines: String, service: String = "sudo", extra: [String: String] = [:]) -> StackVerdict {
        let config = Repository.debian(extra.merging([service: lines]) { $1 })
        return StackAnalysis(codeAloneAccepted: service == "sshd").judge(config.stack(service), caller: Caller(service: service))
    }

    func checks(_ verdict: StackVerdict) -> Set<String> { Set(verdict.findings.filter { $0.severity >= .warning }.map(\.check)) }

    func testShippedExamplesAreProtected() {
        for (name, service) in [("sshd-twofactor.example", "sshd"), ("sudo-twofactor.example", "sudo"),
                                ("sshd-one-prompt.example", "sshd"), ("sshd-key-and-code.example", "sshd")] {
            let result = verdict(Repository.text("pam.d/" + name), service: service)
            XCTAssertEqual(checks(result), [], name)
            XCTAssertTrue(result.asksCode && result.ownerGetsIn && !result.passwordAlone && !result.nothing, name)
        }
        XCTAssertEqual(verdict(Repository.text("pam.d/sshd-key-and-code.example"), service: "sshd").unenrolled, "refused")
        XCTAssertTrue(verdict(Repository.text("pam.d/sshd-key-and-code.example"), service: "sshd").codeAlone)
    }

    func testStockDebianHasNoModule() {
        let result = verdict(Repository.text("Tests/fixtures/doctor/debian12/etc/pam.d/sudo"))
        XCTAssertEqual(checks(result), ["pam.missing"])
        XCTAssertEqual(Severity.exitStatus(result.findings), 2)
    }

    func testEachBrokenShapeIsNamed() {
        XCTAssertEqual(checks(verdict("auth sufficient pam_unix.so\nauth required pam_twofactor.so\n")), ["pam.skips-code"])
        XCTAssertEqual(checks(verdict("@include common-auth\nauth optional pam_twofactor.so\n")), ["pam.skips-code"])
        XCTAssertEqual(checks(verdict("auth required pam_twofactor.so\nauth required pam_permit.so\n", service: "sshd")), ["pam.succeeds-on-nothing"])
        XCTAssertEqual(checks(verdict("@include common-auth\nauth required pam_twofactor.so failmode=open\n")), ["pam.failmode-open"])
        XCTAssertEqual(checks(verdict("@include common-auth\nauth required pam_twofactor.so use_first_pass\n")), ["pam.lockout", "pam.use-first-pass"])
        XCTAssertEqual(checks(verdict("auth required pam_twofactor.so\n")), ["pam.code-alone"])
        let nullok = StackAnalysis(emptyPasswordAccounts: ["alice"]).judge(
            Repository.debian(["sudo": "@include common-auth\nauth required pam_twofactor.so\n"]).stack("sudo"), caller: Caller(service: "sudo"))
        XCTAssertEqual(checks(nullok), ["pam.nullok"])
        XCTAssertEqual(Severity.exitStatus(nullok.findings), 2)
    }
}

final class SshdAnalysisTests: XCTestCase {
    let protectedStack: StackVerdict = StackAnalysis(codeAloneAccepted: true).judge(
        Repository.debian(["sshd": Repository.text("pam.d/sshd-twofactor.example")]).stack("sshd"), caller: Caller(service: "sshd"))

    func checks(_ text: String) -> Set<String> {
        Set(SshdAnalysis.judge(SshdSettings(sshdOutput: text), context: "t", stack: protectedStack, stackHasForwardPass: false)
            .filter { $0.severity >= .warning }.map(\.check))
    }

    func testDebianDefaultsLetKeysInWithoutPam() {
        let stock = "usepam yes\npubkeyauthentication yes\npasswordauthentication yes\nkbdinteractiveauthentication no\nauthenticationmethods any\n"
        XCTAssertEqual(checks(stock), ["sshd.publickey-only", "sshd.password-method"])
    }

    func testReadmeSettingsAreClean() {
        XCTAssertEqual(checks("usepam yes\npubkeyauthentication yes\npasswordauthentication no\nkbdinteractiveauthentication yes\nauthenticationmethods keyboard-interactive\n"), [])
        XCTAssertEqual(checks("usepam yes\npubkeyauthentication yes\npasswordauthentication no\nkbdinteractiveauthentication yes\nauthenticationmethods publickey,keyboard-interactive:pam\n"), [])
    }

    func testUsePamNo() {
        XCTAssertEqual(checks("usepam no\npasswordauthentication yes\npubkeyauthentication no\nkbdinteractiveauthentication yes\nauthenticationmethods any\n"), ["sshd.usepam-no"])
    }
}
