// QR codes as image files: PNG (1-bit greyscale, stored deflate blocks, no zlib needed) and SVG.
// The file holds the secret, so it is created 0600 and never silently overwritten.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorCore

enum QRImageFormat: String, CaseIterable {
    case png, svg

    /// .svg means SVG; anything else is PNG.
    static func forPath(_ path: String) -> QRImageFormat {
        path.lowercased().hasSuffix(".svg") ? .svg : .png
    }
}

enum QRImage {
    /// Pixels per module by default: a version 6 code (41 modules + quiet zone) is 392 px wide.
    static let defaultScale = 8

    static func encode(_ matrix: QRMatrix, format: QRImageFormat, scale: Int) -> [UInt8] {
        switch format {
        case .png: return PNG.encode(matrix, scale: scale)
        case .svg: return Array(SVG.encode(matrix, scale: scale).utf8)
        }
    }
}

enum PNG {
    static func encode(_ matrix: QRMatrix, scale: Int) -> [UInt8] {
        let modules = matrix.sizeWithQuietZone
        let pixels = modules * scale
        let quiet = QRMatrix.quietZone
        // 1 bit per pixel, 1 = white; each row starts with filter type 0 (none).
        let rowBytes = (pixels + 7) / 8
        var raw: [UInt8] = []
        raw.reserveCapacity((rowBytes + 1) * pixels)
        for py in 0..<pixels {
            raw.append(0)
            var row = [UInt8](repeating: 0, count: rowBytes)
            for px in 0..<pixels {
                let light = !matrix.isDark(px / scale - quiet, py / scale - quiet)
                if light { row[px / 8] |= 0x80 >> UInt8(px % 8) }
            }
            // Padding bits at the end of a row are ignored by decoders; keep them white.
            for px in pixels..<(rowBytes * 8) { row[px / 8] |= 0x80 >> UInt8(px % 8) }
            raw.append(contentsOf: row)
        }

        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header: [UInt8] = []
        header += bigEndian(UInt32(pixels))
        header += bigEndian(UInt32(pixels))
        header += [1, 0, 0, 0, 0]  // bit depth 1, greyscale, deflate, adaptive filtering, no interlace
        appendChunk("IHDR", header, to: &out)
        appendChunk("IDAT", zlibStored(raw), to: &out)
        appendChunk("IEND", [], to: &out)
        return out
    }

    static func appendChunk(_ type: String, _ data: [UInt8], to out: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        out += bigEndian(UInt32(data.count))
        out += typeBytes
        out += data
        out += bigEndian(CRC32.checksum(typeBytes + data))
    }

    /// A zlib stream of uncompressed ("stored") deflate blocks of at most 65,535 bytes each.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]  // deflate, 32 KiB window; 0x7801 is a multiple of 31
        var offset = 0
        repeat {
            let length = min(65_535, data.count - offset)
            let final: UInt8 = offset + length == data.count ? 1 : 0
            out.append(final)  // BFINAL, BTYPE 00 (stored)
            out += [UInt8(length & 0xFF), UInt8(length >> 8)]
            out += [UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
            out += data[offset..<(offset + length)]
            offset += length
        } while offset < data.count
        out += bigEndian(adler32(data))
        return out
    }

    static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in data {
            a = (a + UInt32(byte)) % 65_521
            b = (b + a) % 65_521
        }
        return b << 16 | a
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
}

/// CRC-32 (ISO-HDLC, the one PNG and zlib's crc32 use).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

enum SVG {
    /// One path of dark modules (horizontal runs merged) over a white square; the viewBox is in
    /// modules including the quiet zone, width and height in pixels.
    static func encode(_ matrix: QRMatrix, scale: Int) -> String {
        let side = matrix.sizeWithQuietZone
        let quiet = QRMatrix.quietZone
        var path = ""
        for y in 0..<matrix.size {
            var x = 0
            while x < matrix.size {
                guard matrix.isDark(x, y) else { x += 1; continue }
                var run = 1
                while x + run < matrix.size && matrix.isDark(x + run, y) { run += 1 }
                path += "M\(x + quiet) \(y + quiet)h\(run)v1h-\(run)z"
                x += run
            }
        }
        let pixels = side * scale
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="\(pixels)" height="\(pixels)" \
            viewBox="0 0 \(side) \(side)" shape-rendering="crispEdges">
            <rect width="\(side)" height="\(side)" fill="#ffffff"/>
            <path fill="#000000" d="\(path)"/>
            </svg>

            """
    }
}

/// A file for the QR image, created before the enrollment starts (so a bad path fails early)
/// and filled once the secret is known. Mode 0600: the image contains the secret.
final class SecretFile {
    let path: String
    private var fd: Int32

    /// Creates the file exclusively. An existing file is an error unless `force`, which replaces
    /// it (unlink and create, so the new file never inherits the old one's owner or mode).
    init(path: String, force: Bool) throws(CLIError) {
        self.path = path
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        var descriptor = open(path, flags, 0o600)
        if descriptor < 0 && errno == EEXIST {
            guard force else {
                throw CLIError(.failure, "\(path) already exists; use --force to replace it")
            }
            if unlink(path) != 0 {
                throw CLIError(.failure, "cannot replace \(path): \(String(cString: strerror(errno)))")
            }
            descriptor = open(path, flags, 0o600)
        }
        guard descriptor >= 0 else {
            throw CLIError(.failure, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        // The umask may only remove bits; make it exactly owner read/write.
        _ = fchmod(descriptor, 0o600)
        fd = descriptor
    }

    func write(_ bytes: [UInt8]) throws(CLIError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw CLIError(.failure, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += written
        }
        let result = close(fd)
        fd = -1
        if result != 0 {
            throw CLIError(.failure, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Removes the file when the enrollment did not start or was cancelled: its key is useless,
    /// and scanning it would only add a dead entry to the app.
    func discard() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(path)
    }

    deinit { if fd >= 0 { close(fd) } }
}
