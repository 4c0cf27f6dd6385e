// Reading PAM service files the way libpam does (pam_handlers.c): one rule per line, `\` joins
// lines, `#` starts a comment, `[...]` groups a control or an argument with spaces, a leading
// `-` on the type hides a missing module, `@include FILE` takes every rule of the file, and the
// `include`/`substack` controls take the rules of one type. Nothing is executed here; the result
// is the flat handler list that PamDispatch walks, with the nesting level of each substack.
#if canImport(Glibc)
import Glibc
#endif

/// Where the configuration comes from: the live files, or a tree under `--root`.
public protocol ConfigFiles {
    /// The file's text, or nil when it does not exist or cannot be read.
    func read(_ path: String) -> String?
}

/// A PAM return value; the raw values are libpam's (security/_pam_types.h), and `name` is the
/// word a `[value=action]` control uses for it.
public enum PamResult: Int, CaseIterable, Sendable {
    case success = 0, openErr, symbolErr, serviceErr, systemErr, bufErr, permDenied, authErr,
         credInsufficient, authinfoUnavail, userUnknown, maxtries, newAuthtokReqd, acctExpired,
         sessionErr, credUnavail, credExpired, credErr, noModuleData, convErr, authtokErr,
         authtokRecoverErr, authtokLockBusy, authtokDisableAging, tryAgain, ignore, abort,
         authtokExpired, moduleUnknown, badItem, convAgain, incomplete

    /// libpam's control words, in the order of the raw values.
    static let names = ["success", "open_err", "symbol_err", "service_err", "system_err", "buf_err",
                        "perm_denied", "auth_err", "cred_insufficient", "authinfo_unavail",
                        "user_unknown", "maxtries", "new_authtok_reqd", "acct_expired", "session_err",
                        "cred_unavail", "cred_expired", "cred_err", "no_module_data", "conv_err",
                        "authtok_err", "authtok_recover_err", "authtok_lock_busy",
                        "authtok_disable_aging", "try_again", "ignore", "abort", "authtok_expired",
                        "module_unknown", "bad_item", "conv_again", "incomplete"]

    public var name: String { PamResult.names[rawValue] }
    /// "PAM_AUTH_ERR"
    public var constant: String { "PAM_" + name.uppercased() }
}

/// What a control does with one return value (libpam's _PAM_ACTION_*; a jump skips N rules).
public enum PamAction: Equatable, Sendable {
    case ignore, ok, done, bad, die, reset
    case jump(Int)

    static func parse(_ word: String) -> PamAction? {
        switch word.lowercased() {
        case "ignore": return .ignore
        case "ok": return .ok
        case "done": return .done
        case "bad": return .bad
        case "die": return .die
        case "reset": return .reset
        default:
            guard !word.isEmpty, word.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(word), n > 0 else { return nil }
            return .jump(n)
        }
    }
}

/// A control as libpam stores it: an action for every return value.
public struct PamControl: Equatable, Sendable {
    public var actions: [PamAction]
    /// As written in the file ("required", "[success=1 default=ignore]").
    public var text: String

    public func action(for result: PamResult) -> PamAction { actions[result.rawValue] }

    /// The keywords, with libpam's meaning (pam_handlers.c, _pam_parse_conf_line).
    static func keyword(_ word: String) -> PamControl? {
        var set = [PamAction?](repeating: nil, count: PamResult.allCases.count)
        let fallback: PamAction
        switch word.lowercased() {
        case "required":
            set[PamResult.success.rawValue] = .ok; set[PamResult.newAuthtokReqd.rawValue] = .ok
            set[PamResult.ignore.rawValue] = .ignore; fallback = .bad
        case "requisite":
            set[PamResult.success.rawValue] = .ok; set[PamResult.newAuthtokReqd.rawValue] = .ok
            set[PamResult.ignore.rawValue] = .ignore; fallback = .die
        case "optional":
            set[PamResult.success.rawValue] = .ok; set[PamResult.newAuthtokReqd.rawValue] = .ok
            fallback = .ignore
        case "sufficient":
            set[PamResult.success.rawValue] = .done; set[PamResult.newAuthtokReqd.rawValue] = .done
            fallback = .ignore
        default:
            return nil
        }
        return PamControl(actions: set.map { $0 ?? fallback }, text: word)
    }

    /// "[value=action ...]": `default=` fills what is not set yet, later words override, and
    /// whatever is still unset is `bad` (libpam's _pam_parse_control).
    static func bracketed(_ inner: String, text: String) -> (PamControl, [String]) {
        var set = [PamAction?](repeating: nil, count: PamResult.allCases.count)
        var problems: [String] = []
        for token in inner.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            let parts = token.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let action = PamAction.parse(parts[1]) else {
                problems.append("cannot read \"\(token)\"")
                continue
            }
            let key = parts[0].lowercased()
            if key == "default" {
                for index in set.indices where set[index] == nil { set[index] = action }
            } else if let index = PamResult.names.firstIndex(of: key) {
                set[index] = action
            } else {
                problems.append("unknown return value \"\(parts[0])\"")
            }
        }
        return (PamControl(actions: set.map { $0 ?? .bad }, text: text), problems)
    }
}

/// Where a rule was written.
public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var description: String { "\(file):\(line)" }
}

/// One module line of a stack.
public struct PamRule: Sendable {
    public var type: String          // auth, account, password, session
    public var control: PamControl
    public var module: String        // as written: pam_unix.so or /path/to/x.so
    public var arguments: [String]
    public var location: SourceLocation

    /// The file name without directories; libpam_twofactor.so (a build) counts as ours too.
    public var moduleName: String {
        let base = module.split(separator: "/").last.map(String.init) ?? module
        return base.hasSuffix("pam_twofactor.so") ? "pam_twofactor.so" : base
    }
    public var isTwoFactor: Bool { moduleName == "pam_twofactor.so" }
    public func has(_ argument: String) -> Bool { arguments.contains(argument) }

    /// "pam_unix.so nullok (common-auth:1)"
    public var label: String {
        ([moduleName] + arguments).joined(separator: " ") + " (\(location))"
    }
}

/// One entry of the flat list libpam builds: a module, the marker of a substack (its rules follow
/// at level + 1), or a rule that could not be loaded (always fails, like libpam's "fault" entry).
public enum PamHandler: Sendable {
    case module(PamRule)
    case substack(PamControl, SourceLocation, level: Int)
    case fault(String, SourceLocation)
}

public struct PamStack: Sendable {
    public var service: String
    /// The file the service was read from (the service's own or /etc/pam.d/other).
    public var file: String
    public var handlers: [(handler: PamHandler, level: Int)]
    /// Lines that could not be read and what libpam makes of them.
    public var problems: [String]

    public var rules: [PamRule] {
        handlers.compactMap { if case .module(let rule) = $0.handler { return rule } else { return nil } }
    }
    public var twoFactorRules: [PamRule] { rules.filter(\.isTwoFactor) }
}

/// The PAM configuration directory of a tree.
public struct PamConfig {
    public let files: ConfigFiles
    public let directory: String
    /// Deeper than any sane configuration; libpam stops at the same kind of limit.
    static let maxDepth = 16

    public init(files: ConfigFiles, directory: String = "/etc/pam.d") {
        self.files = files
        self.directory = directory
    }

    public func path(of name: String) -> String {
        name.hasPrefix("/") ? name : directory + "/" + name
    }

    public func exists(_ service: String) -> Bool { files.read(path(of: service)) != nil }

    /// The `type` stack of `service` (libpam lowercases service names; a missing service file
    /// means /etc/pam.d/other).
    public func stack(_ service: String, type: String = "auth") -> PamStack {
        let name = service.lowercased()
        var file = path(of: name)
        if files.read(file) == nil { file = path(of: "other") }
        var stack = PamStack(service: name, file: file, handlers: [], problems: [])
        load(file, type: type, level: 0, depth: 0, into: &stack, from: nil)
        return stack
    }

    private func load(_ file: String, type: String, level: Int, depth: Int, into stack: inout PamStack,
                      from: SourceLocation?) {
        let here = from ?? SourceLocation(file: file, line: 0)
        guard depth < PamConfig.maxDepth else {
            stack.problems.append("\(here): includes nest too deep; libpam fails the stack")
            stack.handlers.append((.fault("nesting too deep", here), level))
            return
        }
        guard let text = files.read(file) else {
            stack.problems.append("\(here): \(file) does not exist; libpam fails the stack")
            stack.handlers.append((.fault("\(file) is missing", here), level))
            return
        }
        for (lineNumber, line) in PamConfig.logicalLines(text) {
            let location = SourceLocation(file: file, line: lineNumber)
            var tokens = PamConfig.tokens(line)
            guard !tokens.isEmpty else { continue }
            if tokens[0] == "@include" {
                guard tokens.count >= 2 else { stack.problems.append("\(location): @include without a file"); continue }
                load(path(of: tokens[1]), type: type, level: level, depth: depth + 1, into: &stack, from: location)
                continue
            }
            var ruleType = tokens[0].lowercased()
            if ruleType.hasPrefix("-") { ruleType.removeFirst() }
            guard ruleType == type else { continue }
            guard tokens.count >= 3 else {
                stack.problems.append("\(location): incomplete rule; libpam fails the stack")
                stack.handlers.append((.fault("incomplete rule", location), level))
                continue
            }
            let controlText = tokens[1]
            tokens.removeFirst(2)
            let lower = controlText.lowercased()
            if lower == "include" || lower == "substack" {
                let target = path(of: tokens[0])
                if lower == "include" {
                    load(target, type: type, level: level, depth: depth + 1, into: &stack, from: location)
                } else {
                    // The substack counts as one rule for jumps and keeps done/die to itself.
                    let whole = PamControl(actions: [PamAction](repeating: .ignore, count: PamResult.allCases.count), text: "substack")
                    stack.handlers.append((.substack(whole, location, level: level), level))
                    load(target, type: type, level: level + 1, depth: depth + 1, into: &stack, from: location)
                }
                continue
            }
            let control: PamControl
            if controlText.hasPrefix("[") {
                let inner = String(controlText.dropFirst().dropLast(controlText.hasSuffix("]") ? 1 : 0))
                let (parsed, problems) = PamControl.bracketed(inner, text: controlText)
                control = parsed
                stack.problems += problems.map { "\(location): \($0)" }
            } else if let keyword = PamControl.keyword(controlText) {
                control = keyword
            } else {
                stack.problems.append("\(location): unknown control \"\(controlText)\"; libpam fails the stack")
                stack.handlers.append((.fault("unknown control", location), level))
                continue
            }
            let module = tokens.removeFirst()
            // libpam hands "[a b]" to the module as "a b", with "\\]" as "]".
            let arguments = tokens.map { token -> String in
                guard token.hasPrefix("["), token.hasSuffix("]"), token.count >= 2 else { return token }
                return String(token.dropFirst().dropLast()).replacingOccurrences("\\]", "]")
            }
            stack.handlers.append((.module(PamRule(type: ruleType, control: control, module: module,
                                                   arguments: arguments, location: location)), level))
        }
    }

    /// Lines with comments removed and `\`-continued lines joined, with the number of the first.
    static func logicalLines(_ text: String) -> [(Int, String)] {
        var out: [(Int, String)] = []
        var pending = ""
        var start = 0
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(raw)
            if line.hasSuffix("\r") { line.removeLast() }
            if pending.isEmpty { start = index + 1 }
            if line.hasSuffix("\\") {
                pending += String(line.dropLast()) + " "
                continue
            }
            pending += line
            if let hash = pending.firstIndex(of: "#") { pending = String(pending[..<hash]) }
            out.append((start, pending))
            pending = ""
        }
        if !pending.isEmpty { out.append((start, pending)) }
        return out
    }

    /// Words separated by blanks; `[...]` is one word (with `\]` for a literal bracket), as libpam
    /// reads controls and module arguments.
    static func tokens(_ line: String) -> [String] {
        var out: [String] = []
        var current = ""
        var inBracket = false
        var escaped = false
        for character in line {
            if inBracket {
                if escaped { current.append(character); escaped = false; continue }
                if character == "\\" { escaped = true; current.append(character); continue }
                current.append(character)
                if character == "]" { inBracket = false }
                continue
            }
            if character == " " || character == "\t" {
                if !current.isEmpty { out.append(current); current = "" }
            } else {
                if character == "[" && current.isEmpty { inBracket = true }
                current.append(character)
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}

extension String {
    /// Foundation-free replacement of every `target` by `replacement`.
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            out += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    /// The first occurrence of `target` (Foundation-free).
    func range(of target: String) -> Range<Index>? {
        let needle = Array(target)
        guard !needle.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            var probe = index
            var matched = 0
            while matched < needle.count, probe < endIndex, self[probe] == needle[matched] {
                probe = self.index(after: probe)
                matched += 1
            }
            if matched == needle.count { return index..<probe }
            index = self.index(after: index)
        }
        return nil
    }
}
