// Names, limits and messages that the daemon, the command line, the client and the PAM module
// must agree on: the single definition of each. Like Wire.swift this file is compiled twice (as
// part of TwoFactorWire, and through a symlink inside the Embedded Swift PAM module), so it uses
// only what Embedded Swift has and works on UTF-8 bytes.

public enum Product {
    /// Where twofactord listens unless told otherwise: `socket` in twofactord.conf, the module's
    /// `socket=`, the command line's --socket or $TWOFACTOR_SOCKET. Docs, scripts and the systemd
    /// unit write it as text; a test checks that they match this.
    public static let defaultSocketPath: StaticString = "/run/twofactor/twofactord.sock"

    /// `defaultSocketPath` as a String (the module uses the StaticString's bytes directly).
    public static var defaultSocket: String {
        String(decoding: UnsafeBufferPointer(start: defaultSocketPath.utf8Start,
                                             count: defaultSocketPath.utf8CodeUnitCount), as: UTF8.self)
    }

    /// Longest user name anyone sends or accepts, in bytes: far longer than any real one
    /// (useradd allows 32), short enough to keep every request small.
    public static let maxUserNameLength = 256

    /// What a person is told when a code is refused, at the login prompt and by the command line.
    public static let incorrectCodeMessage = "Incorrect two-factor authentication code"

    /// The second line after a refused code when the daemon finds its clock off by
    /// `offsetMicros` (the rejection's clockOffsetMicros): the daemon sends it as the message,
    /// the module and the command line show it. Whole seconds, rounded; the sign is left out.
    public static func clockHint(offsetMicros: Int64) -> String {
        let seconds = (offsetMicros.magnitude + 500_000) / 1_000_000
        return "The server's clock may be wrong (off by about \(seconds) seconds); please tell the administrator"
    }

    /// `incorrectCodeMessage`, with the clock hint on a second line when the daemon sent an offset.
    public static func incorrectCode(clockOffsetMicros: Int64?) -> String {
        guard let clockOffsetMicros else { return incorrectCodeMessage }
        return incorrectCodeMessage + "\n" + clockHint(offsetMicros: clockOffsetMicros)
    }
}

/// Text from outside (a user name, an option, a config line, a daemon's message, a packet) made
/// safe to show on a terminal or in a log line: printable ASCII stays, every other byte (control
/// characters, escape sequences, non-ASCII and invalid UTF-8, bidirectional overrides) becomes
/// "?", and more than `limit` bytes are cut and end in "...". So it can neither forge nor
/// flood a line. The one sanitizer; callers add only quoting.
public func printable<Bytes: Collection>(_ bytes: Bytes, limit: Int = Int.max) -> String
where Bytes.Element == UInt8 {
    var out: [UInt8] = []
    out.reserveCapacity(limit < bytes.count ? limit + 3 : bytes.count)
    for byte in bytes {
        if out.count == limit {
            out.append(UInt8(ascii: "."))
            out.append(UInt8(ascii: "."))
            out.append(UInt8(ascii: "."))
            break
        }
        out.append(byte >= 0x20 && byte < 0x7f ? byte : UInt8(ascii: "?"))
    }
    return String(decoding: out, as: UTF8.self)
}

/// `printable` for a String's UTF-8 bytes.
public func printable(_ text: String, limit: Int = Int.max) -> String {
    printable(text.utf8, limit: limit)
}
