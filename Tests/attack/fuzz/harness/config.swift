// libFuzzer target "config": ConfigParser.parse (Sources/TwoFactorDaemon/Config.swift) with the
// key definitions it parses by (ConfigKeys.swift), built with the daemon's clock files they need,
// TwoFactorCore, TwoFactorWire and swift-log. Any text (invalid UTF-8 is repaired, as a String
// must be valid) goes in.
//
// Properties checked on every input:
//  - the result is a DaemonConfig or a ConfigError for our file name whose line number lies
//    inside the text (1...number of lines, counting "\n"), and whose message is one readable
//    line (no control characters, however hostile the file).
//  - a parsed config is consistent: OTP parameters valid, lockout_max_seconds >= lockout_seconds,
//    and no value spans a line (no "\n" in any string setting).
//  - what --print-config writes for a parsed config (ConfigKeys.effectiveConfig) parses back to
//    the same config, and so does the example file (--print-default-config) to the defaults.
//  - line endings do not matter: the same text with CRLF line endings gives the same config, or
//    an error with the same line and message (checked for texts without any "\r").
import TwoFactorCore
import TwoFactorWire

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("config property violated: \(message)")
}

let fileName = "fuzz.conf"

func parsed(_ text: String) -> Result<DaemonConfig, ConfigError> {
    do throws(ConfigError) { return .success(try ConfigParser.parse(text, file: fileName)) } catch { return .failure(error) }
}

func check(_ result: Result<DaemonConfig, ConfigError>, text: String) {
    switch result {
    case .success(let config):
        if config.lockoutMaxSeconds < config.lockoutSeconds { fail("lockout_max_seconds below lockout_seconds") }
        if (try? OTPParameters(algorithm: config.parameters.algorithm, digits: config.parameters.digits,
                               period: config.parameters.period)) == nil { fail("invalid OTP parameters accepted") }
        let strings = [config.socket, config.stateDirectory, config.keyFile, config.adminGroup, config.issuer]
            + config.ntpServers.map(\.host)
        for value in strings where value.utf8.contains(UInt8(ascii: "\n")) {
            fail("a setting spans lines: \(value.debugDescription)")
        }
        // --print-config's output is a config file that means the same.
        // The defaults' round trip is checked once, at start-up (defaultsChecked): the same
        // text each time, and the most common result.
        if config == defaults { return }
        let printed = ConfigKeys.effectiveConfig(config)
        switch parsed(printed) {
        case .success(let again): if again != config { fail("--print-config output parses to another config: \(printed.debugDescription)") }
        case .failure(let error): fail("--print-config output does not parse: \(error)")
        }
    case .failure(let error):
        if error.file != fileName { fail("error names file \(error.file)") }
        let lines = text.utf8.reduce(1) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        guard let line = error.line else { fail("error without a line: \(error)") }
        if line < 1 || line > lines { fail("error on line \(line) of a \(lines)-line text: \(error)") }
        if error.description.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            fail("error message with a control character: \(error.description.debugDescription)")
        }
    }
}

func same(_ a: Result<DaemonConfig, ConfigError>, _ b: Result<DaemonConfig, ConfigError>) -> Bool {
    switch (a, b) {
    case (.success(let x), .success(let y)): return x == y
    case (.failure(let x), .failure(let y)): return x.line == y.line && x.message == y.message
    default: return false
    }
}

let defaults = DaemonConfig()

// Once: the example file (--print-default-config) is all defaults, and what --print-config
// writes for the defaults parses back to them.
let defaultsChecked: Void = {
    if parsed(ConfigKeys.exampleFile()) != .success(defaults) { fail("the example file is not all defaults") }
    if parsed(ConfigKeys.effectiveConfig(defaults)) != .success(defaults) { fail("--print-config of the defaults") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    _ = defaultsChecked
    let text = String(decoding: bytes, as: UTF8.self)
    let result = parsed(text)
    check(result, text: text)

    if !text.utf8.contains(UInt8(ascii: "\r")) && text.utf8.contains(UInt8(ascii: "\n")) {
        var crlf: [UInt8] = []
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") { crlf.append(UInt8(ascii: "\r")) }
            crlf.append(byte)
        }
        let crlfText = String(decoding: crlf, as: UTF8.self)
        let crlfResult = parsed(crlfText)
        // The same result (same config, or same line and message) passes the same checks, so
        // check(crlfResult) would only repeat check(result).
        if !same(result, crlfResult) {
            fail("CRLF line endings change the result: \(result) vs \(crlfResult)")
        }
    }
    return 0
}
