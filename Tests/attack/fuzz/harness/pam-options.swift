// libFuzzer target "pam-options": the PAM module's argument parser, Options(argc:argv:pamh:)
// (Sources/PAMTwoFactor/Options.swift), built as ordinary Swift with the module's other files and
// its C shim. argv is the input split on NUL bytes. pam_syslog is replaced by pamlog.c, so the
// lines the module would log are checked too and nothing reaches the system log.
//
// Properties checked on every input (docs/pam_twofactor.8: a bad value is logged and the safer
// default kept; parsing never fails):
//  - timeout is 1...maxTimeoutSeconds, digits 6...8, the effective prompt 1...maxPromptLength bytes.
//  - the socket is the default or the value of the last valid socket= argument: absolute, shorter
//    than sun_path, and socketPathLength is its length.
//  - the prompt is nil or the value of the last prompt= argument (a bad last one means nil).
//  - timeout=, failmode= and digits=: the last one wins, a bad last one means the default.
//  - debug, require, forward_pass, use_first_pass and try_first_pass are set exactly when given
//    (use_first_pass wins over try_first_pass).
//  - every logged line is printable ASCII on one line, a complaint quotes at most 80 bytes of the
//    argument, and there is at most one line per argument.
import CPAMShim
import FuzzPAMLog

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("pam-options property violated: \(message)")
}

func text(_ pointer: UnsafePointer<CChar>) -> [UInt8] {
    Array(UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self), count: strlen(pointer)))
}

/// The value of `argument` after `prefix`, or nil.
func value(_ argument: [UInt8], _ prefix: String) -> [UInt8]? {
    let p = Array(prefix.utf8)
    return argument.starts(with: p) ? Array(argument[p.count...]) : nil
}

func number(_ bytes: [UInt8]) -> Int? {
    guard (1...4).contains(bytes.count), bytes.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    return bytes.reduce(0) { $0 * 10 + Int($1 - 48) }
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

    fuzz_pamlog_reset()
    let options = Options(argc: Int32(storage.count), argv: storage.isEmpty ? nil : argv, pamh: nil)

    // Ranges.
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

    // Socket: the last valid socket= (absolute, fits sun_path), else the default.
    let socket = text(options.socketPath)
    if socket.count != options.socketPathLength { fail("socketPathLength \(options.socketPathLength) for \(socket.count) bytes") }
    if socket.first != UInt8(ascii: "/") || socket.count >= Int(TWOFACTOR_SUN_PATH_SIZE) { fail("socket path \(socket)") }
    let validSockets = arguments.compactMap { value($0, "socket=") }.filter {
        $0.first == UInt8(ascii: "/") && $0.count < Int(TWOFACTOR_SUN_PATH_SIZE)
    }
    if let last = validSockets.last {
        if socket != last { fail("socket is not the last valid socket= value") }
    } else if options.socketPath != Options.cString(Options.defaultSocket) {
        fail("socket is not the default")
    }

    // Last one wins; a bad last one means the default.
    if let last = arguments.compactMap({ value($0, "timeout=") }).last {
        let wanted = number(last).flatMap { (1...Options.maxTimeoutSeconds).contains($0) ? $0 : nil } ?? Options.defaultTimeoutSeconds
        if options.timeoutSeconds != wanted { fail("timeout \(options.timeoutSeconds), expected \(wanted)") }
    } else if options.timeoutSeconds != Options.defaultTimeoutSeconds { fail("timeout without timeout=") }
    if let last = arguments.compactMap({ value($0, "digits=") }).last {
        let wanted = number(last).flatMap { (6...8).contains($0) ? $0 : nil } ?? 6
        if options.digits != wanted { fail("digits \(options.digits), expected \(wanted)") }
    } else if options.digits != 6 { fail("digits without digits=") }
    let failOpen = arguments.compactMap({ value($0, "failmode=") }).last == Array("open".utf8)
    if (options.failMode == .open) != failOpen { fail("failmode \(options.failMode)") }
    if let last = arguments.compactMap({ value($0, "prompt=") }).last {
        if last.isEmpty || last.count > Options.maxPromptLength {
            if options.prompt != nil { fail("a bad last prompt= kept a prompt") }
        } else if options.prompt.map(text) != last { fail("prompt is not the last prompt= value") }
    } else if options.prompt != nil { fail("prompt without prompt=") }

    // What was logged.
    let lines = Int(fuzz_pamlog_count())
    if lines > arguments.count { fail("\(lines) log lines for \(arguments.count) arguments") }
    for index in 0..<min(lines, 64) {
        guard let line = fuzz_pamlog_line(Int32(index)) else { fail("log line \(index) missing") }
        let bytes = text(line)
        if fuzz_pamlog_length(Int32(index)) != bytes.count { fail("log line longer than 1 KiB") }
        if !bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { fail("log line with unprintable bytes: \(bytes)") }
        // A complaint about an option quotes it through printable(): at most 80 bytes and "...".
        if bytes.starts(with: Array("option \"".utf8)) {
            let quoted = bytes.dropFirst(8).prefix { $0 != UInt8(ascii: "\"") }
            if quoted.count > 83 { fail("log line quotes \(quoted.count) bytes of the argument") }
        }
    }

    // The log-line sanitiser on its own, at several limits.
    for (pointer, bytes) in zip(storage, arguments) {
        for limit in [0, 1, 64, 80] {
            let shown = Array(printable(UnsafePointer(pointer), limit: limit).utf8)
            if !shown.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") }) { fail("printable() output \(shown)") }
            let expected = bytes.count > limit ? limit + 3 : bytes.count
            if shown.count != expected { fail("printable() gave \(shown.count) bytes for \(bytes.count), limit \(limit)") }
        }
    }
    return 0
}
