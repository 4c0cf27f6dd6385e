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
//  - debug, require, forward_pass, use_first_pass and try_first_pass are set exactly when given
//    (use_first_pass wins over try_first_pass).
//  - complaints: exactly one per unknown option or bad value, in argv order, each naming that very
//    argument (the same pointer), none for a good one; the problem is one printable line.
//  - the module's log line for a complaint (Options.complaint) is printable ASCII on one line and
//    quotes the argument unambiguously: at most 80 of its bytes plus "...", each shown as itself
//    when printable and not '"', else as '?', so the quotes always delimit the argument.
//  - the shared sanitizer `printable` (Product.swift) at several limits: printable ASCII only,
//    exactly min(count, limit) bytes, plus "..." when cut.
import Glibc

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("pam-options property violated: \(message)")
}

func text(_ pointer: UnsafePointer<CChar>) -> [UInt8] { Array(cStringBytes(pointer)) }

/// The value of `argument` after `prefix`, or nil.
func value(_ argument: [UInt8], _ prefix: String) -> [UInt8]? {
    let p = Array(prefix.utf8)
    return argument.starts(with: p) ? Array(argument[p.count...]) : nil
}

func number(_ bytes: [UInt8]) -> Int? {
    guard (1...4).contains(bytes.count), bytes.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    return bytes.reduce(0) { $0 * 10 + Int($1 - 48) }
}

func isPrintable(_ byte: UInt8) -> Bool { byte >= 0x20 && byte < 0x7f }

/// sun_path on Linux: 108 bytes, the path's NUL included.
let sunPathSize = 108
let flags = ["debug", "require", "use_first_pass", "try_first_pass", "forward_pass"].map { Array($0.utf8) }

/// Whether the module must complain about `argument`: this harness's own reading of
/// docs/pam_twofactor.8, independent of Options.swift.
func isBad(_ argument: [UInt8]) -> Bool {
    if flags.contains(argument) { return false }
    if let v = value(argument, "socket=") { return !(v.first == UInt8(ascii: "/") && v.count < sunPathSize) }
    if let v = value(argument, "daemon_user=") { return !(1...256).contains(v.count) }
    if let v = value(argument, "timeout=") { return number(v).map { !(1...60).contains($0) } ?? true }
    if let v = value(argument, "prompt=") { return !(1...256).contains(v.count) }
    if let v = value(argument, "failmode=") { return v != Array("secure".utf8) && v != Array("open".utf8) }
    if let v = value(argument, "digits=") { return number(v).map { !(6...8).contains($0) } ?? true }
    return true
}

/// The last `prefix` value, if any: (value, good).
func last(_ arguments: [[UInt8]], _ prefix: String) -> (value: [UInt8], good: Bool)? {
    guard let argument = arguments.last(where: { value($0, prefix) != nil }) else { return nil }
    return (value(argument, prefix)!, !isBad(argument))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let arguments: [[UInt8]] = input.isEmpty ? [] : input.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)

    // argv as PAM hands it over: NUL-terminated strings that live for the call.
    let storage = arguments.map { bytes -> UnsafeMutablePointer<CChar> in
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        for (i, byte) in bytes.enumerated() { buffer[i] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
        return buffer
    }
    defer { storage.forEach { $0.deallocate() } }
    let argv = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(storage.count, 1))
    defer { argv.deallocate() }
    for (i, pointer) in storage.enumerated() { argv[i] = UnsafePointer(pointer) }

    var complaints: [(argument: UnsafePointer<CChar>, problem: String)] = []
    let options = Options(argc: Int32(storage.count), argv: storage.isEmpty ? nil : argv) { argument, problem in
        complaints.append((argument, problem))
    }

    // Ranges.
    if Options.socketPathCapacity != sunPathSize { fail("socketPathCapacity \(Options.socketPathCapacity)") }
    if !(1...Options.maxTimeoutSeconds).contains(options.timeoutSeconds) { fail("timeout \(options.timeoutSeconds)") }
    if !(6...8).contains(options.digits) { fail("digits \(options.digits)") }
    let prompt = text(options.effectivePrompt)
    if prompt.isEmpty || prompt.count > Options.maxPromptLength { fail("effective prompt of \(prompt.count) bytes") }

    // Flags.
    func given(_ flag: String) -> Bool { arguments.contains(Array(flag.utf8)) }
    if options.debug != given("debug") { fail("debug") }
    if options.require != given("require") { fail("require") }
    if options.forwardPass != given("forward_pass") { fail("forward_pass") }
    let source: AnswerSource = given("use_first_pass") ? .useFirstPass : given("try_first_pass") ? .tryFirstPass : .prompt
    if options.answerSource != source { fail("answer source \(options.answerSource), expected \(source)") }

    // Last one wins; a bad last one means the default.
    let socket = Array(options.socketPath)
    if let (last, good) = last(arguments, "socket=") , good {
        if socket != last { fail("socket is not the last socket= value") }
    } else if socket != Array(Options.defaultSocketPath) {
        fail("socket is not the default")
    }
    if socket.first != UInt8(ascii: "/") || socket.count >= sunPathSize { fail("socket path \(socket)") }
    if let (last, good) = last(arguments, "daemon_user="), good {
        if text(options.daemonUser) != last { fail("daemon user is not the last daemon_user= value") }
    } else if text(options.daemonUser) != Array("twofactor".utf8) { fail("daemon user is not the default") }
    if let (last, good) = last(arguments, "timeout=") {
        let wanted = good ? number(last)! : Options.defaultTimeoutSeconds
        if options.timeoutSeconds != wanted { fail("timeout \(options.timeoutSeconds), expected \(wanted)") }
    } else if options.timeoutSeconds != Options.defaultTimeoutSeconds { fail("timeout without timeout=") }
    if let (last, good) = last(arguments, "digits=") {
        let wanted = good ? number(last)! : 6
        if options.digits != wanted { fail("digits \(options.digits), expected \(wanted)") }
    } else if options.digits != 6 { fail("digits without digits=") }
    let failOpen = last(arguments, "failmode=")?.value == Array("open".utf8)
    if (options.failMode == .open) != failOpen { fail("failmode \(options.failMode)") }
    if let (last, good) = last(arguments, "prompt="), good {
        if options.prompt.map(text) != last { fail("prompt is not the last prompt= value") }
    } else {
        if options.prompt != nil { fail("a prompt without a good last prompt=") }
        let standard = options.forwardPass ? Options.defaultForwardPrompt : Options.defaultPrompt
        if options.effectivePrompt != Options.cString(standard) { fail("not the default prompt") }
    }

    // Complaints: one per bad argument, naming it.
    let expected = storage.indices.filter { isBad(arguments[$0]) }.map { UnsafePointer(storage[$0]) }
    if complaints.map(\.argument) != expected {
        fail("\(complaints.count) complaints for \(expected.count) bad arguments, or not about them")
    }
    for (argument, problem) in complaints {
        if problem.isEmpty || !problem.utf8.allSatisfy(isPrintable) { fail("problem \(problem.debugDescription)") }

        // The line the module logs: option "QUOTED" PROBLEM.
        let line = Array(Options.complaint(argument, problem).utf8)
        if !line.allSatisfy(isPrintable) { fail("log line with unprintable bytes: \(line)") }
        let head = Array("option \"".utf8), tail = Array("\" \(problem)".utf8)
        guard line.starts(with: head), line.count >= head.count + tail.count, Array(line.suffix(tail.count)) == tail else {
            fail("log line \(String(decoding: line, as: UTF8.self).debugDescription) is not option \"...\" PROBLEM")
        }
        let quoted = Array(line[head.count..<(line.count - tail.count)])
        let bytes = text(argument)
        let shown = bytes.prefix(80).map { isPrintable($0) && $0 != UInt8(ascii: "\"") ? $0 : UInt8(ascii: "?") }
        if quoted != shown + (bytes.count > 80 ? Array("...".utf8) : []) {
            fail("log line quotes \(String(decoding: quoted, as: UTF8.self).debugDescription) for \(bytes)")
        }
    }

    // The shared sanitizer on its own, at several limits.
    for bytes in arguments {
        for limit in [0, 1, 64, 80] {
            let shown = Array(printable(bytes, limit: limit).utf8)
            if !shown.allSatisfy(isPrintable) { fail("printable() output \(shown)") }
            let expected = bytes.count > limit ? limit + 3 : bytes.count
            if shown.count != expected { fail("printable() gave \(shown.count) bytes for \(bytes.count), limit \(limit)") }
        }
    }
    return 0
}
