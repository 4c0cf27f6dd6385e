// libFuzzer target "pam-options": the PAM module's argument parser, Options(argc:argv:complain:)
// (Sources/PAMTwoFactor/Options.swift), and the log line the module writes for each complaint,
// built as ordinary Swift from Sources/PAMTwoFactorPure (the very files the Embedded Swift module
// compiles). argv is the input split on NUL bytes.
//
// Properties checked on every input (docs/pam_twofactor.8: a bad value is logged and the safer
// default kept; parsing never fails):
//  - timeout is 1...maxTimeoutSeconds, digits 6...8, the effective prompt 1...maxPromptLength bytes
//    (the default one, for forward_pass or not, when no prompt= holds).
//  - socket=, daemon_user=, prompt=, timeout=, failmode= and digits=: the last one wins, a bad last
//    one means the default; a good socket is absolute and shorter than sun_path.
//  - debug, require, forward_pass, enroll_at_login, use_first_pass and try_first_pass are set
//    exactly when given
//    (use_first_pass wins over try_first_pass).
//  - complaints: exactly one per unknown option or bad value, in argv order, each naming that very
//    argument (the same pointer), none for a good one; the problem is one printable line.
//  - the module's log line for a complaint (Options.complaint) is printable ASCII on one line and
//    quotes the argument unambiguously: at most 80 of its bytes plus "...", each shown as itself
//    when printable and not '"', else as '?', so the quotes always delimit the argument.
//  - the shared sanitizer `printable` (Product.swift) at several limits: exactly the first
//    min(count, limit) bytes, each printable ASCII byte kept and every other one shown as '?',
//    plus "..." when cut.
//
// Speed: under AddressSanitizer every allocation costs a stack trace and a trip through the
// quarantine, and an input may hold hundreds of arguments, so the harness reads each argument
// once, in place (views into the input, names built once at start-up), and compares the
// module's strings through their UTF-8 storage without copying them.
import Glibc

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("pam-options property violated: \(message)")
}

typealias Bytes = UnsafeBufferPointer<UInt8>

func isPrintable(_ byte: UInt8) -> Bool { byte >= 0x20 && byte < 0x7f }

func bytes(_ literal: String) -> [UInt8] { Array(literal.utf8) }

/// 1 to 4 ASCII digits, nothing else.
func number(_ bytes: Bytes) -> Int? {
    guard (1...4).contains(bytes.count), bytes.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    return bytes.reduce(0) { $0 * 10 + Int($1 - 48) }
}

/// sun_path on Linux: 108 bytes, the path's NUL included.
let sunPathSize = 108

/// The flags, by bit number in `Expectation.flags`.
enum Flag: Int, CaseIterable { case debug, require, useFirstPass, tryFirstPass, forwardPass, enrollAtLogin }
let flagNames: [[UInt8]] = ["debug", "require", "use_first_pass", "try_first_pass", "forward_pass",
                            "enroll_at_login"].map(bytes)

/// The options with a value, by index in `Expectation.last`.
enum Key: Int, CaseIterable { case socket, daemonUser, timeout, prompt, failmode, digits }
let keyPrefixes: [[UInt8]] = ["socket=", "daemon_user=", "timeout=", "prompt=", "failmode=", "digits="].map(bytes)
let keys = Key.allCases

let secure = bytes("secure"), open = bytes("open"), defaultUser = bytes("twofactor")
let logHead = bytes("option \"")
let limits = [0, 1, 64, 80]

/// Whether a value is good: this harness's own reading of docs/pam_twofactor.8, independent of
/// Options.swift.
func isGood(_ key: Key, _ value: Bytes) -> Bool {
    switch key {
    case .socket: return value.first == UInt8(ascii: "/") && value.count < sunPathSize
    case .daemonUser: return (1...256).contains(value.count)
    case .timeout: return number(value).map { (1...60).contains($0) } ?? false
    case .prompt: return (1...256).contains(value.count)
    case .failmode: return value.elementsEqual(secure) || value.elementsEqual(open)
    case .digits: return number(value).map { (6...8).contains($0) } ?? false
    }
}

/// What one argument is: a flag, an option with its value, or unknown.
enum Reading {
    case flag(Flag)
    case option(Key, value: Bytes, good: Bool)
    case unknown

    init(_ argument: Bytes) {
        if let index = flagNames.firstIndex(where: { argument.elementsEqual($0) }) {
            self = .flag(Flag(rawValue: index)!)
            return
        }
        for key in keys where argument.starts(with: keyPrefixes[key.rawValue]) {
            let value = Bytes(rebasing: argument[keyPrefixes[key.rawValue].count...])
            self = .option(key, value: value, good: isGood(key, value))
            return
        }
        self = .unknown
    }

    /// Whether the module must complain about it.
    var isBad: Bool {
        switch self {
        case .flag: return false
        case .option(_, _, let good): return !good
        case .unknown: return true
        }
    }
}

/// One argument: its bytes (a view into the input), the NUL-terminated copy argv points at (in
/// an allocation of its own, so AddressSanitizer catches a read past its end), and its reading.
struct Argument {
    let bytes: Bytes
    let pointer: UnsafeMutablePointer<CChar>
    let reading: Reading
}

// Checked once: constants the checks below rely on.
let constantsChecked: Void = {
    if Options.socketPathCapacity != sunPathSize { fail("socketPathCapacity \(Options.socketPathCapacity)") }
    if keys.count != keyPrefixes.count || Flag.allCases.count != flagNames.count { fail("harness tables") }
}()

/// `shown` is `argument` made printable: each of its first `limit` bytes kept when printable
/// (and, with `quote`, not '"') and shown as '?' otherwise, then "..." when it was longer.
func isShown(_ shown: Bytes, _ argument: Bytes, limit: Int, quote: Bool) -> Bool {
    let kept = min(argument.count, limit), cut = argument.count > limit
    guard shown.count == kept + (cut ? 3 : 0) else { return false }
    for index in 0..<kept {
        let byte = argument[index]
        let keep = isPrintable(byte) && !(quote && byte == UInt8(ascii: "\""))
        if shown[index] != (keep ? byte : UInt8(ascii: "?")) { return false }
    }
    return !cut || shown[kept...].allSatisfy { $0 == UInt8(ascii: ".") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = constantsChecked
    let input = Bytes(start: data, count: size)

    // argv as PAM hands it over: NUL-terminated strings that live for the call.
    var arguments: [Argument] = []
    if size > 0 {
        var start = 0
        for end in 0...size where end == size || input[end] == 0 {
            let bytes = Bytes(rebasing: input[start..<end])
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            UnsafeMutableRawPointer(pointer).copyMemory(from: data + start, byteCount: bytes.count)
            pointer[bytes.count] = 0
            arguments.append(Argument(bytes: bytes, pointer: pointer, reading: Reading(bytes)))
            start = end + 1
        }
    }
    defer { arguments.forEach { $0.pointer.deallocate() } }
    let argv = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(arguments.count, 1))
    defer { argv.deallocate() }
    for (index, argument) in arguments.enumerated() { argv[index] = UnsafePointer(argument.pointer) }

    var complaints: [(argument: UnsafePointer<CChar>, problem: String)] = []
    let options = Options(argc: Int32(arguments.count), argv: arguments.isEmpty ? nil : argv) { argument, problem in
        complaints.append((argument, problem))
    }

    // What the harness expects: the flags given, and the last argument of each option.
    var given = 0
    var lastIndex: (Int?, Int?, Int?, Int?, Int?, Int?) = (nil, nil, nil, nil, nil, nil)
    for (index, argument) in arguments.enumerated() {
        switch argument.reading {
        case .flag(let flag): given |= 1 << flag.rawValue
        case .option(.socket, _, _): lastIndex.0 = index
        case .option(.daemonUser, _, _): lastIndex.1 = index
        case .option(.timeout, _, _): lastIndex.2 = index
        case .option(.prompt, _, _): lastIndex.3 = index
        case .option(.failmode, _, _): lastIndex.4 = index
        case .option(.digits, _, _): lastIndex.5 = index
        case .unknown: break
        }
    }
    /// The value of the last argument of an option, if any, and whether it is good.
    func value(_ index: Int?) -> (value: Bytes, good: Bool)? {
        guard let index, case .option(_, let value, let good) = arguments[index].reading else { return nil }
        return (value, good)
    }

    // Ranges.
    if !(1...Options.maxTimeoutSeconds).contains(options.timeoutSeconds) { fail("timeout \(options.timeoutSeconds)") }
    if !(6...8).contains(options.digits) { fail("digits \(options.digits)") }
    let prompt = cStringBytes(options.effectivePrompt)
    if prompt.isEmpty || prompt.count > Options.maxPromptLength { fail("effective prompt of \(prompt.count) bytes") }

    // Flags.
    func isGiven(_ flag: Flag) -> Bool { given & (1 << flag.rawValue) != 0 }
    if options.debug != isGiven(.debug) { fail("debug") }
    if options.require != isGiven(.require) { fail("require") }
    if options.forwardPass != isGiven(.forwardPass) { fail("forward_pass") }
    if options.enrollAtLogin != isGiven(.enrollAtLogin) { fail("enroll_at_login") }
    let source: AnswerSource = isGiven(.useFirstPass) ? .useFirstPass : isGiven(.tryFirstPass) ? .tryFirstPass : .prompt
    if options.answerSource != source { fail("answer source \(options.answerSource), expected \(source)") }

    // Last one wins; a bad last one means the default.
    let socket = options.socketPath
    if let (last, good) = value(lastIndex.0), good {
        if !socket.elementsEqual(last) { fail("socket is not the last socket= value") }
    } else if !socket.elementsEqual(Options.defaultSocketPath) {
        fail("socket is not the default")
    }
    if socket.first != UInt8(ascii: "/") || socket.count >= sunPathSize { fail("socket path \(Array(socket))") }
    let daemonUser = cStringBytes(options.daemonUser)
    if let (last, good) = value(lastIndex.1), good {
        if !daemonUser.elementsEqual(last) { fail("daemon user is not the last daemon_user= value") }
    } else if !daemonUser.elementsEqual(defaultUser) { fail("daemon user is not the default") }
    if let (last, good) = value(lastIndex.2) {
        let wanted = good ? number(last)! : Options.defaultTimeoutSeconds
        if options.timeoutSeconds != wanted { fail("timeout \(options.timeoutSeconds), expected \(wanted)") }
    } else if options.timeoutSeconds != Options.defaultTimeoutSeconds { fail("timeout without timeout=") }
    if let (last, good) = value(lastIndex.5) {
        let wanted = good ? number(last)! : 6
        if options.digits != wanted { fail("digits \(options.digits), expected \(wanted)") }
    } else if options.digits != 6 { fail("digits without digits=") }
    let failOpen = value(lastIndex.4)?.value.elementsEqual(open) ?? false
    if (options.failMode == .open) != failOpen { fail("failmode \(options.failMode)") }
    if let (last, good) = value(lastIndex.3), good {
        guard let chosen = options.prompt, cStringBytes(chosen).elementsEqual(last) else {
            fail("prompt is not the last prompt= value")
        }
    } else {
        if options.prompt != nil { fail("a prompt without a good last prompt=") }
        let standard = options.forwardPass ? Options.defaultForwardPrompt : Options.defaultPrompt
        if options.effectivePrompt != Options.cString(standard) { fail("not the default prompt") }
    }

    // Complaints: one per bad argument, in order, naming it.
    var next = 0
    for argument in arguments where argument.reading.isBad {
        guard next < complaints.count, complaints[next].argument == UnsafePointer(argument.pointer) else {
            fail("\(complaints.count) complaints, not one about each bad argument in order (argument \(Array(argument.bytes)))")
        }
        var problem = complaints[next].problem
        next += 1
        // The line the module logs: option "QUOTED" PROBLEM.
        var line = Options.complaint(argument.pointer, problem)
        problem.withUTF8 { problem in line.withUTF8 { line in
            if problem.isEmpty || !problem.allSatisfy(isPrintable) { fail("problem \(Array(problem))") }
            let tail = problem.count + 2  // '"', ' ', the problem
            guard line.allSatisfy(isPrintable), line.starts(with: logHead), line.count >= logHead.count + tail,
                  line[line.count - tail] == UInt8(ascii: "\""), line[line.count - tail + 1] == UInt8(ascii: " "),
                  line[(line.count - tail + 2)...].elementsEqual(problem)
            else {
                fail("log line \(String(decoding: line, as: UTF8.self).debugDescription) is not option \"...\" PROBLEM")
            }
            let quoted = Bytes(rebasing: line[logHead.count..<(line.count - tail)])
            if !isShown(quoted, argument.bytes, limit: 80, quote: true) {
                fail("log line quotes \(String(decoding: quoted, as: UTF8.self).debugDescription) for \(Array(argument.bytes))")
            }
        } }
    }
    if next != complaints.count { fail("\(complaints.count) complaints for \(next) bad arguments") }

    // The shared sanitizer on its own, at several limits.
    for argument in arguments {
        for limit in limits {
            var shown = printable(argument.bytes, limit: limit)
            shown.withUTF8 { shown in
                if !isShown(shown, argument.bytes, limit: limit, quote: false) {
                    fail("printable() gave \(Array(shown)) for \(Array(argument.bytes)), limit \(limit)")
                }
            }
        }
    }
    return 0
}
