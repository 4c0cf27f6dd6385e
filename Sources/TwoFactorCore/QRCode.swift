// QR codes: libqrencode builds the symbol; the plain drawings (Unicode half blocks, ASCII) are
// shared by `twofactor enable` (which adds the terminal's choices: style, colours) and by the
// daemon, which sends the drawing to the PAM module for enrollment at login.
#if canImport(Glibc)
import Glibc
#endif
import CQREncode

/// A QR symbol as a square of modules (true = dark), without the quiet zone.
public struct QRMatrix: Sendable {
    public let size: Int
    private let modules: [Bool]

    /// The quiet zone the QR specification asks for around the symbol, in modules.
    public static let quietZone = 4

    public init(size: Int, modules: [Bool]) {
        precondition(modules.count == size * size)
        self.size = size
        self.modules = modules
    }

    /// Encodes `text` in byte mode with error correction level M (the usual level for otpauth
    /// URIs); nil when libqrencode fails (errno says why).
    public init?(qrEncoding text: String) {
        guard let symbol = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1) else { return nil }
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
    public func isDark(_ x: Int, _ y: Int) -> Bool {
        guard x >= 0, y >= 0, x < size, y < size else { return false }
        return modules[y * size + x]
    }

    /// Side of the symbol with its quiet zone, in modules.
    public var sizeWithQuietZone: Int { size + 2 * QRMatrix.quietZone }

    /// The symbol with its quiet zone, two module rows per line: upper half ▀, lower half ▄,
    /// both █, neither space. Ink is a dark module, as on paper (light background).
    public func halfBlockLines() -> [String] {
        let quiet = QRMatrix.quietZone
        var lines: [String] = []
        var y = -quiet
        while y < size + quiet {
            var line = ""
            for x in -quiet..<(size + quiet) {
                let top = isDark(x, y)
                let bottom = y + 1 < size + quiet && isDark(x, y + 1)
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
        return lines
    }

    /// Two characters per module keep it roughly square in a terminal cell grid.
    public func asciiLines() -> [String] {
        let range = -QRMatrix.quietZone..<(size + QRMatrix.quietZone)
        return range.map { y in range.map { x in isDark(x, y) ? "##" : "  " }.joined() }
    }
}
