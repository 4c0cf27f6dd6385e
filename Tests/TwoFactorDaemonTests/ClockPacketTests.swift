// SNTP codec and the client's acceptance rules (RFC 4330 / 5905), with hand-computed timestamps.
import XCTest
@testable import TwoFactorDaemon

final class ClockTimestampTests: XCTestCase {
    func testUnixEpochIsNTPSeconds2208988800() {
        let epoch = NTPTimestamp(unixSeconds: 0, nanoseconds: 0)
        XCTAssertEqual(epoch.seconds, 0x83AA_7E80)
        XCTAssertEqual(epoch.fraction, 0)
    }

    func testFractionsAreBinary() {
        XCTAssertEqual(NTPTimestamp(unixSeconds: 0, nanoseconds: 500_000_000).fraction, 0x8000_0000)
        XCTAssertEqual(NTPTimestamp(unixSeconds: 0, nanoseconds: 250_000_000).fraction, 0x4000_0000)
        XCTAssertEqual(NTPTimestamp(unixTime: 0.75).fraction, 0xC000_0000)
        // 1 ns is 4.29 units of 2^-32 s: truncated to 4.
        XCTAssertEqual(NTPTimestamp(unixSeconds: 0, nanoseconds: 1).fraction, 4)
        // Nanoseconds out of range are carried into the seconds.
        XCTAssertEqual(NTPTimestamp(unixSeconds: 10, nanoseconds: -500_000_000),
                       NTPTimestamp(unixSeconds: 9, nanoseconds: 500_000_000))
        XCTAssertEqual(NTPTimestamp(unixSeconds: 10, nanoseconds: 1_250_000_000),
                       NTPTimestamp(unixSeconds: 11, nanoseconds: 250_000_000))
    }

    func testPresentDayRoundTrip() {
        let now = 1_795_951_234.123_456 // 2026-11-29
        let stamp = NTPTimestamp(unixTime: now)
        XCTAssertEqual(Int64(stamp.seconds), 1_795_951_234 + 2_208_988_800)
        XCTAssertEqual(stamp.unixTime(near: now + 1000), now, accuracy: 1e-6)
    }

    func testEraOneStartsIn2036() {
        let eraStart: Int64 = 2_085_978_496 // 2036-02-07T06:28:16Z = 2^32 NTP seconds
        XCTAssertEqual(NTPTimestamp(unixSeconds: eraStart, nanoseconds: 0).raw, 0)
        XCTAssertEqual(NTPTimestamp(unixSeconds: eraStart - 1, nanoseconds: 0).seconds, UInt32.max)
        // Seconds field 16 means era 1 (2036) near 2036 and era 0 (1900) near 1900.
        let small = NTPTimestamp(seconds: 16, fraction: 0)
        XCTAssertEqual(small.unixTime(near: Double(eraStart)), Double(eraStart + 16))
        XCTAssertEqual(small.unixTime(near: -2_208_988_000), -2_208_988_784)
    }

    func testDifferencesAcrossTheEraBoundary() {
        let eraStart: Int64 = 2_085_978_496
        let before = NTPTimestamp(unixSeconds: eraStart - 1, nanoseconds: 250_000_000)
        let after = NTPTimestamp(unixSeconds: eraStart + 1, nanoseconds: 0)
        XCTAssertEqual(after - before, 1.75)
        XCTAssertEqual(before - after, -1.75)
    }
}

final class ClockPacketCodecTests: XCTestCase {
    func testClientRequestBytes() {
        let transmit = NTPTimestamp(seconds: 0xEA1B_2C3D, fraction: 0x1234_5678)
        let bytes = NTPPacket.clientRequest(transmit: transmit).encoded()
        XCTAssertEqual(bytes.count, 48)
        XCTAssertEqual(bytes[0], 0x23) // LI 0, version 4, mode 3 (client)
        XCTAssertEqual(Array(bytes[1..<40]), [UInt8](repeating: 0, count: 39))
        XCTAssertEqual(Array(bytes[40..<48]), [0xEA, 0x1B, 0x2C, 0x3D, 0x12, 0x34, 0x56, 0x78])
    }

    func testDecodeServerAnswer() throws {
        var bytes: [UInt8] = [0xE4, 2, 6, 0xEC] // LI 3, version 4, mode 4, stratum 2, poll 6, precision -20
        bytes += [0, 0, 0x80, 0] + [0, 1, 0, 0] // root delay 0.5 s, root dispersion 1 s
        bytes += Array("GOOG".utf8)
        for word: UInt32 in [1, 2, 3, 4, 5, 6, 7, 8] {
            bytes += [0, 0, 0, UInt8(word)]
        }
        bytes += [0xFF, 0xFF] // trailing bytes (extension fields) are ignored
        let packet = try XCTUnwrap(NTPPacket(decoding: bytes))
        XCTAssertEqual(packet.leap, 3)
        XCTAssertEqual(packet.version, 4)
        XCTAssertEqual(packet.mode, 4)
        XCTAssertEqual(packet.stratum, 2)
        XCTAssertEqual(packet.poll, 6)
        XCTAssertEqual(packet.precision, -20)
        XCTAssertEqual(packet.rootDelay, 0x8000)
        XCTAssertEqual(packet.rootDispersion, 0x10000)
        XCTAssertEqual(packet.referenceID, 0x474F_4F47)
        XCTAssertNil(packet.kissCode)
        XCTAssertEqual(packet.reference, NTPTimestamp(seconds: 1, fraction: 2))
        XCTAssertEqual(packet.origin, NTPTimestamp(seconds: 3, fraction: 4))
        XCTAssertEqual(packet.receive, NTPTimestamp(seconds: 5, fraction: 6))
        XCTAssertEqual(packet.transmit, NTPTimestamp(seconds: 7, fraction: 8))
        XCTAssertEqual(packet.encoded(), Array(bytes.prefix(48)))
    }

    func testShortPacketDoesNotDecode() {
        XCTAssertNil(NTPPacket(decoding: [UInt8](repeating: 0x24, count: 47)))
        XCTAssertNil(NTPPacket(decoding: [UInt8]()))
    }

    func testKissCode() {
        var packet = NTPPacket(mode: 4, stratum: 0, referenceID: 0x5241_5445) // "RATE"
        XCTAssertEqual(packet.kissCode, "RATE")
        packet.referenceID = 0x4100_0A20 // "A", NUL, newline, space: not printable, trailing space cut
        XCTAssertEqual(packet.kissCode, "A??")
    }
}

/// Answers built from exact binary fractions so the expected offset and delay are exact.
final class ClockAnswerRulesTests: XCTestCase {
    let base = 1_795_951_234.0
    lazy var t1 = NTPTimestamp(unixTime: base)
    lazy var sent = NTPTimestamp(seconds: t1.seconds, fraction: 0x9E37_79B9) // random low bits

    func answer(t2: Double, t3: Double, mutate: (inout NTPPacket) -> Void = { _ in }) -> [UInt8] {
        var packet = NTPPacket(version: 4, mode: 4, stratum: 2, referenceID: 0x7F00_0001,
                               reference: NTPTimestamp(unixTime: base - 64), origin: sent,
                               receive: NTPTimestamp(unixTime: base + t2), transmit: NTPTimestamp(unixTime: base + t3))
        mutate(&packet)
        return packet.encoded()
    }

    func evaluate(_ bytes: [UInt8], t4: Double = 0.5) -> Result<NTPExchange, NTPRejection> {
        SNTP.evaluate(reply: bytes, sentTransmit: sent, t1: t1, t4: NTPTimestamp(unixTime: base + t4))
    }

    func testOffsetAndDelayFromTheFourTimestamps() throws {
        // Server 10.125 s ahead; 0.125 s each way; 0.25 s spent in the server.
        // θ = ((10.25 − 0) + (10.5 − 0.5)) / 2 = 10.125; δ = (0.5 − 0) − (10.5 − 10.25) = 0.25
        let exchange = try evaluate(answer(t2: 10.25, t3: 10.5)).get()
        XCTAssertEqual(exchange.serverAheadSeconds, 10.125)
        XCTAssertEqual(exchange.delaySeconds, 0.25)
        XCTAssertEqual(exchange.localOffsetSeconds, -10.125)
        XCTAssertEqual(exchange.stratum, 2)
    }

    func testLocalClockAheadGivesPositiveOffset() throws {
        // Our clock 120 s ahead (as under faketime +120s): the server's times are 120 s earlier.
        let exchange = try evaluate(answer(t2: -120 + 0.125, t3: -120 + 0.25), t4: 0.375).get()
        XCTAssertEqual(exchange.localOffsetSeconds, 120)
        XCTAssertEqual(exchange.delaySeconds, 0.25)
    }

    func testVersion3IsAccepted() {
        XCTAssertNoThrow(try evaluate(answer(t2: 0.125, t3: 0.25) { $0.version = 3 }).get())
    }

    func testRejections() {
        func rejection(_ bytes: [UInt8], t4: Double = 0.5) -> NTPRejection? {
            if case .failure(let why) = evaluate(bytes, t4: t4) { return why }
            return nil
        }
        XCTAssertEqual(rejection(Array(answer(t2: 0.125, t3: 0.25).prefix(40))), .tooShort(40))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.origin = self.t1 }), .wrongOrigin)
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.origin = .zero }), .wrongOrigin)
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.mode = 3 }), .wrongMode(3))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.mode = 5 }), .wrongMode(5))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.version = 2 }), .wrongVersion(2))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.version = 5 }), .wrongVersion(5))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.stratum = 0; $0.referenceID = 0x5241_5445 }),
                       .kissOfDeath("RATE"))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.stratum = 16 }),
                       .unsynchronized(stratum: 16, leap: 0))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.stratum = 200 }),
                       .unsynchronized(stratum: 200, leap: 0))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.leap = 3 }),
                       .unsynchronized(stratum: 2, leap: 3))
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.transmit = .zero }), .zeroTimestamp)
        XCTAssertEqual(rejection(answer(t2: 0.125, t3: 0.25) { $0.receive = .zero }), .zeroTimestamp)
        // The server claims to have held the packet longer than our whole round trip.
        XCTAssertEqual(rejection(answer(t2: 0.0, t3: 0.75)), .negativeDelay(-0.25))
        // 1.5 s round trip: above SNTP.maximumDelay (1 s).
        XCTAssertEqual(rejection(answer(t2: 0.75, t3: 0.75), t4: 1.5), .excessiveDelay(1.5))
        XCTAssertNoThrow(try evaluate(answer(t2: 0.5, t3: 0.5), t4: 1.0).get()) // exactly 1 s is allowed
    }

    func testForgedKissOfDeathIsNotBelieved() {
        // Without our transmit timestamp a KoD is just noise: it must not demobilise the server.
        let forged = answer(t2: 0.125, t3: 0.25) { $0.stratum = 0; $0.referenceID = 0x4445_4E59; $0.origin = .zero }
        guard case .failure(let why) = evaluate(forged) else { return XCTFail("accepted") }
        XCTAssertEqual(why, .wrongOrigin)
        XCTAssertFalse(why.demobilizesServer)
    }

    func testOnlyDenyAndRestrictDemobilise() {
        XCTAssertTrue(NTPRejection.kissOfDeath("DENY").demobilizesServer)
        XCTAssertTrue(NTPRejection.kissOfDeath("RSTR").demobilizesServer)
        XCTAssertFalse(NTPRejection.kissOfDeath("RATE").demobilizesServer)
        XCTAssertFalse(NTPRejection.unsynchronized(stratum: 16, leap: 3).demobilizesServer)
    }

    func testAcrossTheEraBoundary() throws {
        // The same exchange a quarter second before NTP era 1 begins (2036-02-07).
        let eraBase = 2_085_978_496.0 - 0.25
        let t1 = NTPTimestamp(unixTime: eraBase)
        let sent = NTPTimestamp(seconds: t1.seconds, fraction: 0x0123_4567)
        let packet = NTPPacket(mode: 4, stratum: 1, origin: sent, receive: NTPTimestamp(unixTime: eraBase + 10.25),
                               transmit: NTPTimestamp(unixTime: eraBase + 10.5))
        let exchange = try SNTP.evaluate(reply: packet.encoded(), sentTransmit: sent, t1: t1,
                                         t4: NTPTimestamp(unixTime: eraBase + 0.5)).get()
        XCTAssertEqual(exchange.serverAheadSeconds, 10.125)
        XCTAssertEqual(exchange.delaySeconds, 0.25)
    }
}
