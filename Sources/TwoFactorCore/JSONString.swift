// One JSON string literal writer for everything that prints JSON: the command line's --json
// output and the daemon's JSON audit lines.

public enum JSONString {
    /// `text` as a JSON string literal: quotes, backslashes and control characters escaped, and
    /// U+2028/U+2029 too (JavaScript line terminators), so a crafted user name can never end the
    /// string or the line.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f || (0x2028...0x2029).contains(scalar.value) {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
