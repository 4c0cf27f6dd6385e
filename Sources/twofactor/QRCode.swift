// QR codes in a terminal: the symbol and its plain drawings are TwoFactorCore's (QRCode.swift);
// this file chooses the style and the colours.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorCore

extension QRMatrix {
    /// Encodes `text` (TwoFactorCore's QRMatrix) or says why not.
    init(encoding text: String) throws(CLIError) {
        guard let matrix = QRMatrix(qrEncoding: text) else {
            throw CLIError(.failure, "could not build the QR code: \(String(cString: strerror(errno)))")
        }
        self = matrix
    }
}

enum QRTerminalStyle: String, CaseIterable {
    case auto, unicode, ascii, none

    /// Unicode half blocks when the locale's character set is UTF-8 and the terminal is not a
    /// "dumb" one; plain ASCII otherwise.
    static func detect() -> QRTerminalStyle {
        let codeset = nl_langinfo(nl_item(CODESET)).map { String(cString: $0) } ?? ""
        let term = getenv("TERM").map { String(cString: $0) } ?? ""
        let utf8 = codeset.uppercased().replacingOccurrences("-", "") == "UTF8"
        if !utf8 || term == "dumb" || term == "vt100" || term == "vt220" { return .ascii }
        return .unicode
    }
}

enum QRTerminalRenderer {
    /// Draws the symbol with its quiet zone. Ink is a dark module, as on paper. When `colors` is
    /// set (a colour terminal), every line is painted black on white so the code reads the same
    /// on dark and light terminal themes; without colours it relies on a light background.
    static func render(_ matrix: QRMatrix, style: QRTerminalStyle, colors: Bool) -> String {
        let lines: [String]
        switch style {
        case .unicode: lines = matrix.halfBlockLines()
        case .ascii: lines = matrix.asciiLines()
        case .auto, .none: return ""
        }
        if colors {
            // Black on bright white; reset at the end of each line so a resize or scroll does
            // not smear the background.
            return lines.map { "\u{1B}[30;107m" + $0 + "\u{1B}[0m" }.joined(separator: "\n")
        }
        return lines.joined(separator: "\n")
    }

    /// Terminal columns the drawing takes.
    static func columns(_ matrix: QRMatrix, style: QRTerminalStyle) -> Int {
        style == .ascii ? 2 * matrix.sizeWithQuietZone : matrix.sizeWithQuietZone
    }

    /// Colours are used on a terminal unless NO_COLOR is set (https://no-color.org).
    static func colorsWanted() -> Bool {
        guard Terminal.standardOutputIsTerminal else { return false }
        if let noColor = getenv("NO_COLOR"), noColor.pointee != 0 { return false }
        if let term = getenv("TERM"), String(cString: term) == "dumb" { return false }
        return true
    }
}

extension String {
    func replacingOccurrences(_ target: Character, _ replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}
