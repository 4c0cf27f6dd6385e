import Foundation
import XCTest
@testable import PAMTwoFactorPure

/// argv as libpam hands it to the module: C strings that live as long as this object.
final class ArgumentVector {
    let pointers: UnsafeMutablePointer<UnsafePointer<CChar>?>
    let count: Int

    init(_ arguments: [String]) {
        count = arguments.count
        pointers = .allocate(capacity: max(count, 1))
        for (index, argument) in arguments.enumerated() { pointers[index] = UnsafePointer(strdup(argument)) }
    }

    deinit {
        for index in 0..<count { free(UnsafeMutablePointer(mutating: pointers[index])) }
        pointers.deallocate()
    }
}

/// The module's option parsing (Options.swift, the very file the module compiles).
final class OptionsTests: XCTestCase {
    private var kept: [ArgumentVector] = []

    /// The options and every complaint ("ARGUMENT: problem") the module would log.
    private func parse(_ arguments: [String]) -> (Options, [String]) {
        let argv = ArgumentVector(arguments)
        kept.append(argv)  // Options points into argv
        var complaints: [String] = []
        let options = Options(argc: Int32(argv.count), argv: argv.pointers) { argument, problem in
            complaints.append(String(cString: argument) + ": " + problem)
        }
        return (options, complaints)
    }

    private func text(_ bytes: UnsafeBufferPointer<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
    private func text(_ pointer: UnsafePointer<CChar>?) -> String? { pointer.map { String(cString: $0) } }

    func testDefaults() {
        let (options, complaints) = parse([])
        XCTAssertEqual(complaints, [])
        XCTAssertEqual(text(options.socketPath), Product.defaultSocket)
        XCTAssertEqual(text(options.socketPath), "/run/twofactor/twofactord.sock")
        XCTAssertEqual(text(options.daemonUser), "twofactor")
        XCTAssertEqual(options.timeoutSeconds, 3)
        XCTAssertNil(options.prompt)
        XCTAssertEqual(text(options.effectivePrompt), "Two-factor authentication code (or recovery code): ")
        XCTAssertFalse(options.require)
        XCTAssertEqual(options.failMode, .secure)
        XCTAssertFalse(options.debug)
        XCTAssertEqual(options.answerSource, .prompt)
        XCTAssertFalse(options.forwardPass)
        XCTAssertEqual(options.digits, 6)
        // A null argv or argc 0 is the same.
        let none = Options(argc: 0, argv: nil) { _, _ in XCTFail("no complaint expected") }
        XCTAssertEqual(none.timeoutSeconds, 3)
    }

    func testEveryOptionWithAGoodValue() {
        let (options, complaints) = parse([
            "debug", "require", "try_first_pass", "forward_pass", "socket=/tmp/tf.sock", "daemon_user=tfd",
            "timeout=60", "prompt=Code: ", "failmode=open", "digits=8",
        ])
        XCTAssertEqual(complaints, [])
        XCTAssertTrue(options.debug)
        XCTAssertTrue(options.require)
        XCTAssertEqual(options.answerSource, .tryFirstPass)
        XCTAssertTrue(options.forwardPass)
        XCTAssertEqual(text(options.socketPath), "/tmp/tf.sock")
        XCTAssertEqual(text(options.daemonUser), "tfd")
        XCTAssertEqual(options.timeoutSeconds, 60)
        XCTAssertEqual(text(options.prompt), "Code: ")
        XCTAssertEqual(text(options.effectivePrompt), "Code: ")
        XCTAssertEqual(options.failMode, .open)
        XCTAssertEqual(options.digits, 8)

        XCTAssertEqual(parse(["use_first_pass"]).0.answerSource, .useFirstPass)
        // use_first_pass is the stricter of the two, in either order.
        XCTAssertEqual(parse(["try_first_pass", "use_first_pass"]).0.answerSource, .useFirstPass)
        XCTAssertEqual(parse(["use_first_pass", "try_first_pass"]).0.answerSource, .useFirstPass)
        XCTAssertEqual(text(parse(["forward_pass"]).0.effectivePrompt), "Password and two-factor code: ")
        XCTAssertEqual(parse(["digits=7"]).0.digits, 7)
        XCTAssertEqual(parse(["timeout=1"]).0.timeoutSeconds, 1)
        XCTAssertEqual(parse(["failmode=secure"]).0.failMode, .secure)
    }

    func testLimitsAreInclusive() {
        let longestPath = "/" + String(repeating: "s", count: Options.socketPathCapacity - 2)
        XCTAssertEqual(Options.socketPathCapacity, 108)  // sun_path on Linux
        XCTAssertEqual(text(parse(["socket=" + longestPath]).0.socketPath), longestPath)
        let longestUser = String(repeating: "u", count: Product.maxUserNameLength)
        XCTAssertEqual(text(parse(["daemon_user=" + longestUser]).0.daemonUser), longestUser)
        let longestPrompt = String(repeating: "p", count: Options.maxPromptLength)
        XCTAssertEqual(text(parse(["prompt=" + longestPrompt]).0.prompt), longestPrompt)
    }

    /// Each bad value is reported and leaves the safe default, even after a good value.
    func testBadValuesKeepTheSafeDefaults() {
        let bad: [(String, String, (Options) -> Bool)] = [
            ("timeout=10", "timeout=0", { $0.timeoutSeconds == 3 }),
            ("timeout=10", "timeout=61", { $0.timeoutSeconds == 3 }),
            ("timeout=10", "timeout=-1", { $0.timeoutSeconds == 3 }),
            ("timeout=10", "timeout=3s", { $0.timeoutSeconds == 3 }),
            ("timeout=10", "timeout=", { $0.timeoutSeconds == 3 }),
            ("timeout=10", "timeout=99999999999999999999", { $0.timeoutSeconds == 3 }),
            ("failmode=open", "failmode=maybe", { $0.failMode == .secure }),
            ("failmode=open", "failmode=OPEN", { $0.failMode == .secure }),
            ("failmode=open", "failmode=", { $0.failMode == .secure }),
            ("failmode=open", "failmode=open,", { $0.failMode == .secure }),
            ("digits=8", "digits=5", { $0.digits == 6 }),
            ("digits=8", "digits=9", { $0.digits == 6 }),
            ("digits=8", "digits=x", { $0.digits == 6 }),
            ("digits=8", "digits=99999999999999999999", { $0.digits == 6 }),
            ("prompt=Code: ", "prompt=", { $0.prompt == nil }),
            ("prompt=Code: ", "prompt=" + String(repeating: "p", count: Options.maxPromptLength + 1), { $0.prompt == nil }),
            ("daemon_user=tfd", "daemon_user=", { String(cString: $0.daemonUser) == "twofactor" }),
            ("daemon_user=tfd", "daemon_user=" + String(repeating: "u", count: Product.maxUserNameLength + 1),
             { String(cString: $0.daemonUser) == "twofactor" }),
            ("socket=/tmp/tf.sock", "socket=relative/path", { String(decoding: $0.socketPath, as: UTF8.self) == Product.defaultSocket }),
            ("socket=/tmp/tf.sock", "socket=", { String(decoding: $0.socketPath, as: UTF8.self) == Product.defaultSocket }),
            ("socket=/tmp/tf.sock", "socket=/" + String(repeating: "s", count: Options.socketPathCapacity - 1),
             { String(decoding: $0.socketPath, as: UTF8.self) == Product.defaultSocket }),
        ]
        for (good, value, isDefault) in bad {
            let (options, complaints) = parse([good, value])
            XCTAssertTrue(isDefault(options), "\(good) \(value)")
            XCTAssertEqual(complaints.count, 1, "\(good) \(value): \(complaints)")
            XCTAssertTrue(complaints.first?.hasPrefix(value + ": ") == true, "\(complaints)")
        }
    }

    func testComplaintsSayWhatIsUsedInstead() {
        let (_, complaints) = parse(["bogus", "timeout=0", "failmode=maybe", "digits=5", "prompt=", "socket=x", "daemon_user=", "=", "debug=1"])
        XCTAssertEqual(complaints, [
            "bogus: is not a known option; ignored",
            "timeout=0: must be whole seconds from 1 to 60; using 3",
            "failmode=maybe: must be secure or open; using secure",
            "digits=5: must be 6, 7 or 8; using 6",
            "prompt=: must be 1 to 256 bytes; using the default prompt",
            "socket=x: must be an absolute path shorter than 108 bytes; using the default socket",
            "daemon_user=: must be a user name of 1 to 256 bytes; using twofactor",
            "=: is not a known option; ignored",
            "debug=1: is not a known option; ignored",
        ])
    }

    /// The line the module logs for a complaint: a '"' in the argument must not end the quotes
    /// early (found by the pam-options fuzzer, Tests/attack/fuzz/regressions/pam-options).
    func testTheLoggedComplaintQuotesTheArgumentUnambiguously() {
        let argv = ArgumentVector(["x\" is fine\n" + String(repeating: "a", count: 90), "plain"])
        XCTAssertEqual(Options.complaint(argv.pointers[0]!, "is not a known option; ignored"),
                       "option \"x? is fine?" + String(repeating: "a", count: 69) + "...\" is not a known option; ignored")
        XCTAssertEqual(Options.complaint(argv.pointers[1]!, "is not a known option; ignored"),
                       "option \"plain\" is not a known option; ignored")
    }

    func testNullArgumentsAreSkipped() {
        let argv = ArgumentVector(["debug", "require"])
        free(UnsafeMutablePointer(mutating: argv.pointers[0]))
        argv.pointers[0] = nil
        defer { argv.pointers[0] = UnsafePointer(strdup("x")) }
        let options = Options(argc: 2, argv: argv.pointers) { _, _ in XCTFail("no complaint expected") }
        XCTAssertFalse(options.debug)
        XCTAssertTrue(options.require)
    }
}
