// libFuzzer target "ntp": the SNTP answer parser and its acceptance rules
// (Sources/TwoFactorDaemon/Clock/NTPPacket.swift and NTPTimestamp.swift). An NTP answer is
// unauthenticated UDP from the network, so every byte of it is attacker-controlled.
//
// Properties checked on every input:
//  - NTPPacket(decoding:) is nil exactly for fewer than 48 bytes; otherwise encoded() gives back
//    exactly the first 48 bytes (every header bit is represented).
//  - SNTP.evaluate with fixed T1/T4 and a fixed sent transmit timestamp: tooShort below 48 bytes;
//    no answer is accepted unless it echoes our transmit timestamp (origin check).
//  - evaluate again with the sent timestamp set to the packet's origin (so the later rules run):
//    an accepted answer has mode 4, version 3 or 4, stratum 1 to 15, leap indicator not 3,
//    non-zero receive and transmit timestamps, a delay in 0...SNTP.maximumDelay, finite numbers;
//    a rejection names the rule the packet breaks, and its description never traps.
//  - the kiss code is printable ASCII of at most 4 characters.

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("ntp property violated: \(message)")
}

// Fixed local clock readings: T1 when the request left, T4 when the answer arrived 50 ms later.
let t1 = NTPTimestamp(unixTime: 1_700_000_000.25)
let t4 = NTPTimestamp(unixTime: 1_700_000_000.30)
let sentTransmit = NTPTimestamp(seconds: t1.seconds, fraction: 0x9E37_79B9)

func check(_ result: Result<NTPExchange, NTPRejection>, packet: NTPPacket, sent: NTPTimestamp) {
    switch result {
    case .success(let exchange):
        if packet.origin != sent || sent.isZero { fail("accepted without echoing our transmit timestamp") }
        if packet.mode != NTPPacket.serverMode { fail("accepted mode \(packet.mode)") }
        if packet.version != 3 && packet.version != 4 { fail("accepted version \(packet.version)") }
        if packet.stratum == 0 || packet.stratum >= 16 || packet.leap == 3 { fail("accepted an unsynchronised server") }
        if packet.receive.isZero || packet.transmit.isZero { fail("accepted zero timestamps") }
        if !(exchange.delaySeconds >= 0 && exchange.delaySeconds <= SNTP.maximumDelay) { fail("delay \(exchange.delaySeconds)") }
        if !exchange.serverAheadSeconds.isFinite { fail("offset not finite") }
        if exchange.stratum != Int(packet.stratum) { fail("stratum") }
        let expectedDelay = (t4 - t1) - (packet.transmit - packet.receive)
        if exchange.delaySeconds != expectedDelay { fail("delay is not (T4-T1)-(T3-T2)") }
        _ = exchange.localOffsetSeconds
    case .failure(let rejection):
        switch rejection {
        case .tooShort: fail("tooShort for a decodable packet")
        case .wrongSource: fail("evaluate never judges the source")
        case .wrongOrigin: if packet.origin == sent && !sent.isZero { fail("wrongOrigin for an echoed timestamp") }
        case .wrongMode(let mode): if mode == NTPPacket.serverMode || mode != packet.mode { fail("wrongMode \(mode)") }
        case .wrongVersion(let version): if version == 3 || version == 4 { fail("wrongVersion \(version)") }
        case .kissOfDeath: if packet.stratum != 0 { fail("kiss-o'-death with stratum \(packet.stratum)") }
        case .unsynchronized(let stratum, let leap): if stratum < 16 && leap != 3 { fail("unsynchronized \(stratum) \(leap)") }
        case .zeroTimestamp: if !packet.receive.isZero && !packet.transmit.isZero { fail("zeroTimestamp") }
        case .negativeDelay(let delay): if !(delay < 0) { fail("negativeDelay \(delay)") }
        case .excessiveDelay(let delay): if !(delay > SNTP.maximumDelay) { fail("excessiveDelay \(delay)") }
        }
        _ = rejection.description
        _ = rejection.demobilizesServer
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard let packet = NTPPacket(decoding: input) else {
        if input.count >= NTPPacket.headerSize { fail("\(input.count) bytes did not decode") }
        if SNTP.evaluate(reply: input, sentTransmit: sentTransmit, t1: t1, t4: t4) != .failure(.tooShort(input.count)) {
            fail("a short answer was not tooShort")
        }
        return 0
    }
    if input.count < NTPPacket.headerSize { fail("\(input.count) bytes decoded") }
    if packet.encoded() != Array(input.prefix(NTPPacket.headerSize)) { fail("decode then encode is not the identity") }
    if let kiss = packet.kissCode {
        if kiss.utf8.count > 4 || !kiss.utf8.allSatisfy({ (0x20...0x7e).contains($0) }) { fail("kiss code \(kiss)") }
    }
    _ = packet.transmit.unixTime(near: 1_700_000_000)
    _ = packet.transmit.description

    // As a reply to our request with the fixed timestamp (almost always wrongOrigin)...
    check(SNTP.evaluate(reply: input, sentTransmit: sentTransmit, t1: t1, t4: t4), packet: packet, sent: sentTransmit)
    // ...and as if we had sent its origin timestamp, so the rules after the origin check run.
    check(SNTP.evaluate(reply: input, sentTransmit: packet.origin, t1: t1, t4: t4), packet: packet, sent: packet.origin)
    return 0
}
