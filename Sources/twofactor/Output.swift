// Output for people (times, tables) and for programs (JSON with stable, ordered keys).
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorCore

/// A JSON value that keeps object keys in the order they were given, so output is stable.
indirect enum JSON {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    static func optionalString(_ value: String?) -> JSON { value.map(JSON.string) ?? .null }
    static func optionalInt<T: BinaryInteger>(_ value: T?) -> JSON { value.map { .int(Int64($0)) } ?? .null }
    /// Unix seconds as an ISO 8601 UTC timestamp, or null.
    static func timestamp(_ value: UInt64?) -> JSON { value.map { .string(TimeText.iso8601($0)) } ?? .null }

    /// On one line (JSON Lines, as `enable --json` writes).
    func compact() -> String {
        switch self {
        case .array(let items): return "[" + items.map { $0.compact() }.joined(separator: ", ") + "]"
        case .object(let members):
            return "{" + members.map { JSONString.quoted($0.0) + ": " + $0.1.compact() }.joined(separator: ", ") + "}"
        default: return rendered()
        }
    }

    func rendered(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent)
        let inner = String(repeating: "  ", count: indent + 1)
        switch self {
        case .string(let text): return JSONString.quoted(text)
        case .int(let number): return String(number)
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return "null"
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { inner + $0.rendered(indent: indent + 1) }.joined(separator: ",\n") + "\n" + pad + "]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            return "{\n" + members.map { inner + JSONString.quoted($0.0) + ": " + $0.1.rendered(indent: indent + 1) }
                .joined(separator: ",\n") + "\n" + pad + "}"
        }
    }

    /// Prints the value on stdout followed by a newline.
    func print() {
        Swift.print(rendered())
    }
}

enum TimeText {
    static func now() -> UInt64 { UInt64(max(0, time(nil))) }

    /// "2026-11-29T16:20:01Z"
    static func iso8601(_ seconds: UInt64) -> String {
        format(seconds, "%Y-%m-%dT%H:%M:%SZ", local: false)
    }

    /// "2026-11-29 17:20:01 CET", in the local time zone (TZ).
    static func absolute(_ seconds: UInt64) -> String {
        format(seconds, "%Y-%m-%d %H:%M:%S %Z", local: true)
    }

    static func format(_ seconds: UInt64, _ pattern: String, local: Bool) -> String {
        var value = time_t(clamping: seconds)
        var parts = tm()
        let converted = local ? localtime_r(&value, &parts) : gmtime_r(&value, &parts)
        guard converted != nil else { return String(seconds) }
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, pattern, &parts)
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "3 minutes ago", "in 5 minutes", "just now".
    static func relative(_ seconds: UInt64, now: UInt64 = TimeText.now()) -> String {
        let future = seconds > now
        let distance = future ? seconds - now : now - seconds
        if distance < 5 { return future ? "in a moment" : "just now" }
        let amount: String
        switch distance {
        case ..<120: amount = "\(distance) seconds"
        case ..<(120 * 60): amount = "\(distance / 60) minutes"
        case ..<(48 * 3600): amount = "\(distance / 3600) hours"
        default: amount = "\(distance / 86_400) days"
        }
        return future ? "in \(amount)" : "\(amount) ago"
    }

    /// "5 minutes" for a duration.
    static func duration(_ seconds: UInt64) -> String {
        switch seconds {
        case ..<120: return "\(seconds) seconds"
        case ..<(120 * 60): return "\(seconds / 60) minutes"
        case ..<(48 * 3600): return "\(seconds / 3600) hours"
        default: return "\(seconds / 86_400) days"
        }
    }
}

/// A plain text table with left-aligned columns separated by two spaces.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []

    /// Each column as wide as its widest cell.
    var widths: [Int] {
        var widths = header.map(\.count)
        for row in rows {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], cell.count)
            }
        }
        return widths
    }

    static func line(_ cells: [String], widths: [Int]) -> String {
        var out = ""
        for (column, cell) in cells.enumerated() {
            if column == cells.count - 1 || column >= widths.count {
                out += cell
            } else {
                out += cell + String(repeating: " ", count: max(0, widths[column] - cell.count) + 2)
            }
        }
        return out
    }

    func rendered() -> String {
        let widths = self.widths
        return ([Self.line(header, widths: widths)] + rows.map { Self.line($0, widths: widths) }).joined(separator: "\n")
    }
}

/// Labelled lines ("Label:  value") with the values aligned.
struct FieldList {
    var items: [(String, String)] = []

    mutating func add(_ label: String, _ value: String) { items.append((label, value)) }

    func rendered(indent: String = "  ") -> String {
        let width = items.map { $0.0.count }.max() ?? 0
        return items.map { indent + $0.0 + ":" + String(repeating: " ", count: width - $0.0.count + 2) + $0.1 }
            .joined(separator: "\n")
    }
}
