// QR codes: libqrencode builds the symbol; this file draws it in a terminal.
#if canImport(Glibc)
import Glibc
#endif
import CQREncode

/// A QR symbol as a square of modules (true = dark), without the quiet zone.
struct QRMatrix {
    let size: Int
    private let modules: [Bool]

    /// The quiet zone the QR specification asks for around the symbol, in modules.
    static let quietZone = 4

    init(size: Int, modules: [Bool]) {
        precondition(modules.count == size * size)
        self.size = size
        self.modules = modules
    }

    /// Encodes `text` in byte mode with error correction level M (the usual level for otpauth URIs).
    init(encoding text: String) throws(CLIError) {
        guard let symbol = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1) else {
            throw CLIError(.failure, "could not build the QR code: \(String(cString: strerror(errno)))")
        }
        defer { QRcode_free(symbol) }
        let width = Int(symbol.pointee.width)
        var modules = [Bool](repeating: false, count: width * width)
        for index in 0..<(width * width) {
            // Bit 0 of each byte is the module's colour; the other bits describe its role.
            modules[index] = symbol.pointee.data[index] & 1 == 1
        }
        self.init(size: width, modules: modules)
    }

    /// Dark or light at (x, y); coordinates outside the symbol (the quiet zone) are light.
    func isDark(_ x: Int, _ y: Int) -> Bool {
        guard x >= 0, y >= 0, x < size, y < size else { return false }
        return modules[y * size + x]
    }

    /// Side of the symbol with its quiet zone, in modules.
    var sizeWithQuietZone: Int { size + 2 * QRMatrix.quietZone }
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
        let quiet = QRMatrix.quietZone
        let range = -quiet..<(matrix.size + quiet)
        var lines: [String] = []
        switch style {
        case .unicode:
            // Two module rows per text line: upper half ▀, lower half ▄, both █, neither space.
            var y = -quiet
            while y < matrix.size + quiet {
                var line = ""
                for x in range {
                    let top = matrix.isDark(x, y)
                    let bottom = y + 1 < matrix.size + quiet && matrix.isDark(x, y + 1)
                    switch (top, bottom) {
                    case (true, true): line += "█"
                    case (true, false): line += "▀"
                    case (false, true): line += "▄"
                    case (false, false): line += " "
                    }
                }
                lines.append(line)
                y += 2
            }
        case .ascii:
            // Two characters per module keep it roughly square in a terminal cell grid.
            for y in range {
                var line = ""
                for x in range { line += matrix.isDark(x, y) ? "##" : "  " }
                lines.append(line)
            }
        case .auto, .none:
            return ""
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
