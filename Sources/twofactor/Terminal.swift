// Reading codes and answers from a person (or a script), and noticing Ctrl-C.
// Input is read byte by byte with read(2) into a [UInt8] that the caller zeroes after use, so a
// code does not linger in Foundation or stdio buffers.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorCore

/// Set by the signal handler; checked after a read is interrupted.
nonisolated(unsafe) private var receivedSignal: sig_atomic_t = 0

enum Terminal {
    /// Longest line kept; anything after it is read and discarded (a code is at most 64 bytes).
    static let maxLineLength = 1024

    static var standardInputIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }
    static var standardOutputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// The width of the terminal on stdout, when stdout is one that knows its size.
    static var outputColumns: Int? {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }

    /// Makes SIGINT, SIGTERM and SIGHUP interrupt a blocked read instead of killing the process,
    /// so a pending enrollment can be cancelled on the way out.
    static func catchInterrupts() {
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in receivedSignal = sig_atomic_t(number) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0  // no SA_RESTART: read(2) returns EINTR
            sigaction(signalNumber, &action, nil)
        }
    }

    static var interrupted: Bool { receivedSignal != 0 }

    /// Writes text to stderr unbuffered (prompts go there so stdout stays clean for --json).
    static func writeError(_ text: String) {
        var bytes = Array(text.utf8)
        writeAll(STDERR_FILENO, &bytes)
    }

    /// Writes text to the controlling terminal (/dev/tty), whatever stdout and stderr are.
    /// Returns false when the process has none.
    static func writeToTerminal(_ text: String) -> Bool {
        let fd = open("/dev/tty", O_WRONLY | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        writeAll(fd, &bytes)
        return true
    }

    static func writeAll(_ fd: Int32, _ bytes: inout [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in write(fd, raw.baseAddress! + offset, raw.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }

    enum LineResult {
        case line([UInt8])
        case endOfFile
        case interrupted
    }

    /// Shows `prompt` on stderr and reads one line from stdin. With `echo` false and stdin a
    /// terminal, typing is not shown (like getpass). Stdin that is not a terminal is read as is.
    static func prompt(_ prompt: String, echo: Bool) -> LineResult {
        writeError(prompt)
        let hideTyping = !echo && standardInputIsTerminal
        var saved = termios()
        var hidden = false
        if hideTyping, tcgetattr(STDIN_FILENO, &saved) == 0 {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            quiet.c_lflag |= tcflag_t(ECHONL)
            hidden = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0
        }
        let result = readLine()
        if hidden {
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
            // ECHONL showed the newline; on Ctrl-C or EOF end the prompt's line ourselves.
            if case .line = result {} else { writeError("\n") }
        } else if case .interrupted = result, standardInputIsTerminal {
            writeError("\n")
        } else if !standardInputIsTerminal {
            // Nothing echoed the piped answer: end the prompt's line so messages start afresh.
            writeError("\n")
        }
        return result
    }

    /// Reads one line from stdin without a prompt (for --code-stdin).
    static func readLine() -> LineResult {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        var sawAnything = false
        while true {
            if interrupted {
                ConstantTime.zero(&line)
                return .interrupted
            }
            let count = read(STDIN_FILENO, &byte, 1)
            if count < 0 {
                if errno == EINTR { continue }  // the loop head checks for a signal
                ConstantTime.zero(&line)
                return .endOfFile
            }
            if count == 0 {
                if !sawAnything { return .endOfFile }
                break
            }
            sawAnything = true
            if byte == UInt8(ascii: "\n") { break }
            if line.count < maxLineLength { line.append(byte) }
        }
        byte = 0
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        return .line(line)
    }

    /// Asks a yes/no question; only "y" or "yes" (any case) is yes. EOF and Ctrl-C are no.
    static func confirm(_ question: String) -> Bool {
        guard case .line(let answer) = prompt(question + " [y/N] ", echo: true) else { return false }
        let text = String(decoding: answer, as: UTF8.self).trimmingSpaces().lowercased()
        return text == "y" || text == "yes"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}

/// Where a code comes from: a prompt, or one line of stdin (--code-stdin).
struct CodeSource {
    let fromStandardInput: Bool

    /// The next code, or nil on EOF; throws `interrupted` on Ctrl-C.
    func next(prompt: String, echo: Bool) throws(CLIError) -> [UInt8]? {
        let result = fromStandardInput ? Terminal.readLine() : Terminal.prompt(prompt, echo: echo)
        switch result {
        case .line(var bytes):
            // Surrounding blanks are never part of a code; trim without copying into a String.
            while let first = bytes.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { bytes.removeFirst() }
            while let last = bytes.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { bytes.removeLast() }
            return bytes
        case .endOfFile:
            return nil
        case .interrupted:
            throw CLIError(.interrupted, "interrupted")
        }
    }

    /// Only one code can come from stdin; a person at a prompt gets a few tries.
    func attempts(_ interactive: Int) -> Int { fromStandardInput ? 1 : interactive }
}

/// Checks the shape of a code before it is sent, so a typo does not count toward a lockout.
/// Returns nil when it looks like a code, else what is wrong with it.
func codeShapeProblem(_ bytes: [UInt8], digits: [Int]) -> String? {
    var firstProblem: CodeInputError? = nil
    for length in digits {
        switch CodeInput.classify(bytes, digits: length) {
        case .totp, .recovery: return nil
        case .invalid(let problem): if firstProblem == nil { firstProblem = problem }
        }
    }
    return firstProblem.map { "\($0)" }
}
