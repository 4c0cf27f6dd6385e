// The 48-byte NTP header (RFC 5905 figure 8) and the SNTP client's rules for accepting an answer
// (RFC 4330 section 5). Extension fields and MACs after the header are ignored.
import TwoFactorWire

public struct NTPPacket: Sendable, Equatable {
    public static let headerSize = 48
    public static let clientMode: UInt8 = 3
    public static let serverMode: UInt8 = 4

    /// Leap indicator: 0 none, 1/2 leap second pending, 3 clock unsynchronised.
    public var leap: UInt8
    public var version: UInt8
    public var mode: UInt8
    /// 0 kiss-o'-death, 1 primary, 2–15 secondary, 16 unsynchronised.
    public var stratum: UInt8
    public var poll: Int8
    public var precision: Int8
    /// NTP short format (16.16 fixed point seconds).
    public var rootDelay: UInt32
    public var rootDispersion: UInt32
    /// Upstream server, or with stratum 0 a four-letter kiss code such as "RATE" or "DENY".
    public var referenceID: UInt32
    public var reference: NTPTimestamp
    public var origin: NTPTimestamp
    public var receive: NTPTimestamp
    public var transmit: NTPTimestamp

    public init(leap: UInt8 = 0, version: UInt8 = 4, mode: UInt8, stratum: UInt8 = 0, poll: Int8 = 0,
                precision: Int8 = 0, rootDelay: UInt32 = 0, rootDispersion: UInt32 = 0,
                referenceID: UInt32 = 0, reference: NTPTimestamp = .zero, origin: NTPTimestamp = .zero,
                receive: NTPTimestamp = .zero, transmit: NTPTimestamp = .zero) {
        self.leap = leap
        self.version = version
        self.mode = mode
        self.stratum = stratum
        self.poll = poll
        self.precision = precision
        self.rootDelay = rootDelay
        self.rootDispersion = rootDispersion
        self.referenceID = referenceID
        self.reference = reference
        self.origin = origin
        self.receive = receive
        self.transmit = transmit
    }

    /// A client request (RFC 4330 section 5): version 4, mode 3, everything zero except the
    /// transmit timestamp, which the server must echo back as the origin timestamp.
    public static func clientRequest(transmit: NTPTimestamp) -> NTPPacket {
        NTPPacket(version: 4, mode: clientMode, transmit: transmit)
    }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize)
        out.append((leap & 0x3) << 6 | (version & 0x7) << 3 | (mode & 0x7))
        out.append(stratum)
        out.append(UInt8(bitPattern: poll))
        out.append(UInt8(bitPattern: precision))
        for word in [rootDelay, rootDispersion, referenceID] { Self.append(word, to: &out) }
        for stamp in [reference, origin, receive, transmit] {
            Self.append(stamp.seconds, to: &out)
            Self.append(stamp.fraction, to: &out)
        }
        return out
    }

    /// Decodes the header; nil when fewer than 48 bytes arrived.
    public init?(decoding bytes: some Collection<UInt8>) {
        guard bytes.count >= Self.headerSize else { return nil }
        let b = Array(bytes.prefix(Self.headerSize))
        func word(_ at: Int) -> UInt32 {
            UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
        }
        func stamp(_ at: Int) -> NTPTimestamp { NTPTimestamp(seconds: word(at), fraction: word(at + 4)) }
        self.init(leap: b[0] >> 6, version: (b[0] >> 3) & 0x7, mode: b[0] & 0x7, stratum: b[1],
                  poll: Int8(bitPattern: b[2]), precision: Int8(bitPattern: b[3]),
                  rootDelay: word(4), rootDispersion: word(8), referenceID: word(12),
                  reference: stamp(16), origin: stamp(24), receive: stamp(32), transmit: stamp(40))
    }

    /// The kiss code of a kiss-o'-death packet (stratum 0), "?" for bytes that are not printable.
    public var kissCode: String? {
        guard stratum == 0 else { return nil }
        let bytes = [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: referenceID >> $0) }
        return printable(bytes).trimmingTrailingSpaces()
    }

    private static func append(_ word: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: word >> 24))
        out.append(UInt8(truncatingIfNeeded: word >> 16))
        out.append(UInt8(truncatingIfNeeded: word >> 8))
        out.append(UInt8(truncatingIfNeeded: word))
    }
}

private extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Why an answer was thrown away.
public enum NTPRejection: Error, Sendable, Equatable, CustomStringConvertible {
    case tooShort(Int)
    case wrongSource(String)
    /// The origin timestamp does not echo our transmit timestamp: stale, duplicated or spoofed.
    case wrongOrigin
    case wrongMode(UInt8)
    case wrongVersion(UInt8)
    case kissOfDeath(String)
    /// Stratum 16 or above, or leap indicator 3: the server's own clock is not synchronised.
    case unsynchronized(stratum: UInt8, leap: UInt8)
    case zeroTimestamp
    case negativeDelay(Double)
    case excessiveDelay(Double)

    public var description: String {
        switch self {
        case .tooShort(let n): return "answer too short (\(n) bytes)"
        case .wrongSource(let from): return "answer from the wrong address \(from)"
        case .wrongOrigin: return "answer does not echo our transmit timestamp"
        case .wrongMode(let m): return "answer in mode \(m), not 4 (server)"
        case .wrongVersion(let v): return "answer with NTP version \(v), not 3 or 4"
        case .kissOfDeath(let code): return "kiss-o'-death \(code.isEmpty ? "(no code)" : code)"
        case .unsynchronized(let stratum, let leap):
            return "server unsynchronised (stratum \(stratum), leap indicator \(leap))"
        case .zeroTimestamp: return "answer without receive/transmit timestamps"
        case .negativeDelay(let d): return "negative round-trip delay (\(formatSeconds(d)))"
        case .excessiveDelay(let d):
            return "round-trip delay \(formatSeconds(d)) above \(formatSeconds(SNTP.maximumDelay))"
        }
    }

    /// A kiss-o'-death that tells us to stop asking this server altogether (RFC 4330 section 8).
    public var demobilizesServer: Bool {
        if case .kissOfDeath(let code) = self { return code == "DENY" || code == "RSTR" }
        return false
    }
}

/// Offset and delay of one accepted answer.
public struct NTPExchange: Sendable, Equatable {
    /// θ = ((T2−T1)+(T3−T4))/2: how far the server's clock is ahead of ours.
    public var serverAheadSeconds: Double
    /// δ = (T4−T1)−(T3−T2): the round trip, not counting the server's processing time.
    public var delaySeconds: Double
    public var stratum: Int

    /// Local minus true time, the sign ClockReading uses.
    public var localOffsetSeconds: Double { -serverAheadSeconds }
}

public enum SNTP {
    /// Answers whose round trip took longer than this are discarded: the offset's error is up to
    /// half the delay, and a second-long round trip means a queue or a path too bad to trust.
    public static let maximumDelay = 1.0

    /// Applies RFC 4330's checks to an answer and computes offset and delay.
    /// - Parameters:
    ///   - sentTransmit: the transmit timestamp we put in the request (random low bits).
    ///   - t1: our clock when the request left; t4: our clock when the answer arrived.
    public static func evaluate(reply bytes: some Collection<UInt8>, sentTransmit: NTPTimestamp,
                                t1: NTPTimestamp, t4: NTPTimestamp) -> Result<NTPExchange, NTPRejection> {
        guard let packet = NTPPacket(decoding: bytes) else { return .failure(.tooShort(bytes.count)) }
        // The origin check comes first: until it passes, the packet may be forged (even a KoD).
        guard packet.origin == sentTransmit, !sentTransmit.isZero else { return .failure(.wrongOrigin) }
        guard packet.mode == NTPPacket.serverMode else { return .failure(.wrongMode(packet.mode)) }
        guard packet.version == 3 || packet.version == 4 else { return .failure(.wrongVersion(packet.version)) }
        if let kiss = packet.kissCode { return .failure(.kissOfDeath(kiss)) }
        guard packet.stratum < 16, packet.leap != 3 else {
            return .failure(.unsynchronized(stratum: packet.stratum, leap: packet.leap))
        }
        guard !packet.receive.isZero, !packet.transmit.isZero else { return .failure(.zeroTimestamp) }
        let t2 = packet.receive, t3 = packet.transmit
        let delay = (t4 - t1) - (t3 - t2)
        guard delay >= 0 else { return .failure(.negativeDelay(delay)) }
        guard delay <= maximumDelay else { return .failure(.excessiveDelay(delay)) }
        let theta = ((t2 - t1) + (t3 - t4)) / 2
        return .success(NTPExchange(serverAheadSeconds: theta, delaySeconds: delay, stratum: Int(packet.stratum)))
    }
}

/// "+12.345 s", "-0.004 s", with a sign so people can tell ahead from behind.
func formatSeconds(_ seconds: Double, signed: Bool = false) -> String {
    let sign = seconds < 0 ? "-" : (signed ? "+" : "")
    let magnitude = abs(seconds)
    let millis = Int64((magnitude * 1000).rounded())
    let text = "\(millis / 1000)." + String("00\(millis % 1000)".suffix(3))
    return "\(sign)\(text) s"
}
