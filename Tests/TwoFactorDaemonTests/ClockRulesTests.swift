// Sample selection, verdicts, compensation and the monitor's behaviour without servers.
import Logging
import XCTest
@testable import TwoFactorDaemon

final class ClockSelectionTests: XCTestCase {
    func sample(offset: Double, delay: Double, server: String = "a") -> NTPSample {
        NTPSample(exchange: NTPExchange(serverAheadSeconds: -offset, delaySeconds: delay, stratum: 2),
                  server: server, localTime: 1000, bootTime: 10)
    }

    func testLowestDelayWins() {
        var round = NTPRound()
        round.record(sample(offset: 5.0, delay: 0.080))
        round.record(sample(offset: 4.2, delay: 0.012, server: "b"))
        round.record(sample(offset: 4.9, delay: 0.040))
        XCTAssertEqual(round.best?.exchange.localOffsetSeconds, 4.2)
        XCTAssertEqual(round.best?.server, "b")
        XCTAssertNil(NTPRound().best)
    }

    func testFailureSummaries() {
        var silent = NTPRound()
        silent.record(server: "127.0.0.1:5000", error: .noAnswer(timeout: 1))
        silent.record(server: "127.0.0.1:5000", error: .noAnswer(timeout: 1))
        XCTAssertEqual(silent.failureSummary, "no NTP server answered (127.0.0.1:5000: no answer within 1.000 s)")

        var bad = NTPRound()
        bad.record(server: "x", error: .resolution("Name or service not known"))
        bad.record(server: "127.0.0.1:5000", error: .noAnswer(timeout: 1))
        bad.record(server: "127.0.0.1:5000", error: .rejected(.unsynchronized(stratum: 16, leap: 3)))
        XCTAssertEqual(bad.failureSummary, "no usable NTP answer (x: cannot resolve: Name or service not known; "
                       + "127.0.0.1:5000: server unsynchronised (stratum 16, leap indicator 3))")
    }
}

final class ClockVerdictTests: XCTestCase {
    let config = ClockConfiguration(servers: ["127.0.0.1:5000"], intervalSeconds: 60, warnThresholdSeconds: 10)
    let synced = KernelClockStatus(synchronized: true, estimatedErrorMicros: 500)
    let unsynced = KernelClockStatus(synchronized: false)

    func measured(_ offset: Double, at boot: Double = 1000, localTime: Double = 1_795_951_234) -> ClockObservations {
        ClockObservations(measurement: ClockMeasurement(offsetSeconds: offset, delaySeconds: 0.0004, server: "127.0.0.1:5000",
                                                        stratum: 8, localTime: localTime, bootTime: boot),
                          roundsCompleted: 1)
    }

    func testStateThresholds() {
        XCTAssertEqual(ClockPolicy.warningThreshold(forBadThreshold: 10), 2)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: 0.3, badThreshold: 10), .ok)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: -2.0, badThreshold: 10), .ok)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: 2.5, badThreshold: 10), .warning)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: -10.0, badThreshold: 10), .warning)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: 10.001, badThreshold: 10), .bad)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: -120, badThreshold: 10), .bad)
        XCTAssertEqual(ClockPolicy.state(offsetSeconds: 30, badThreshold: 60), .warning)
    }

    func testMaximumAge() {
        XCTAssertEqual(ClockPolicy.maximumAge(intervalSeconds: 1), 3600)
        XCTAssertEqual(ClockPolicy.maximumAge(intervalSeconds: 900), 3600)
        XCTAssertEqual(ClockPolicy.maximumAge(intervalSeconds: 7200), 21_600)
        XCTAssertEqual(ClockPolicy.maximumAge(intervalSeconds: 100_000), 86_400)
    }

    func testCompensationUsesTheMeasuredOffset() {
        let obs = measured(120, at: 1000, localTime: 1_795_951_234)
        // 10 s later by both clocks: true time is local − 120.
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: config, bootTime: 1010, localTime: 1_795_951_244.7),
                       1_795_951_124)
        // Someone stepped the wall clock an hour forward since: the boot clock keeps us right.
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: config, bootTime: 1010, localTime: 1_795_954_844.7),
                       1_795_951_124)
        var off = config
        off.compensation = false
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: off, bootTime: 1010, localTime: 1_795_951_244.7),
                       1_795_951_244)
    }

    func testOffsetsBeyondTheCompensationBoundAreNotCompensated() {
        let obs = measured(120, at: 1000, localTime: 1_795_951_234)
        var bounded = config
        bounded.compensationMaxSeconds = 119
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: bounded, bootTime: 1010, localTime: 1_795_951_244.7),
                       1_795_951_244)
        // The hint still names the offset: the clock is wrong, it just is not trusted that far.
        XCTAssertEqual(ClockPolicy.suspectOffset(obs, configuration: bounded, bootTime: 1010), 120)
        bounded.compensationMaxSeconds = 120
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: bounded, bootTime: 1010, localTime: 1_795_951_244.7),
                       1_795_951_124)
    }

    func testStaleOrMissingMeasurementMeansLocalTime() {
        let obs = measured(120, at: 1000)
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: config, bootTime: 1000 + 3601, localTime: 5000.2), 5000)
        XCTAssertNotNil(ClockPolicy.usableMeasurement(obs, configuration: config, bootTime: 1000 + 3599))
        XCTAssertEqual(ClockPolicy.verificationTime(ClockObservations(), configuration: config, bootTime: 1, localTime: 77.9), 77)
    }

    func testLastGoodMeasurementStillCompensatesWhenARoundFails() {
        var obs = measured(120, at: 1000, localTime: 1_795_951_234)
        obs.lastRoundFailure = "no NTP server answered"
        XCTAssertEqual(ClockPolicy.verificationTime(obs, configuration: config, bootTime: 1100, localTime: 0), 1_795_951_214)
        XCTAssertEqual(ClockPolicy.suspectOffset(obs, configuration: config, bootTime: 1100), 120)
    }

    func testSuspectOffsetOnlyAboveTheThreshold() {
        XCTAssertEqual(ClockPolicy.suspectOffset(measured(-12.345), configuration: config, bootTime: 1001), -12.345)
        XCTAssertNil(ClockPolicy.suspectOffset(measured(9.9), configuration: config, bootTime: 1001))
        XCTAssertNil(ClockPolicy.suspectOffset(measured(500), configuration: config, bootTime: 1000 + 4000)) // stale
        XCTAssertNil(ClockPolicy.suspectOffset(ClockObservations(), configuration: config, bootTime: 1))
    }

    func testReadingWhenMeasuredAndKernelSynchronised() {
        let reading = ClockPolicy.reading(measured(0.0031), configuration: config, kernel: synced, bootTime: 1005)
        XCTAssertEqual(reading.state, .ok)
        XCTAssertEqual(reading.offsetSeconds, 0.0031)
        XCTAssertEqual(reading.delaySeconds, 0.0004)
        XCTAssertEqual(reading.server, "127.0.0.1:5000")
        XCTAssertEqual(reading.stratum, 8)
        XCTAssertEqual(reading.measuredAt, 1_795_951_234)
        XCTAssertTrue(reading.kernelSynchronized)
        XCTAssertEqual(reading.kernelErrorMicros, 500)
        XCTAssertNil(reading.remedy)
        XCTAssertTrue(reading.compensation)
        XCTAssertEqual(reading.summary, "ok: clock 0.003 s ahead (server 127.0.0.1:5000, stratum 8, delay 0.4 ms, "
                       + "measured 5 s ago); kernel: synchronised (estimated error 0.5 ms)")
    }

    func testBadClockHasARemedy() {
        let reading = ClockPolicy.reading(measured(-120.004), configuration: config, kernel: unsynced, bootTime: 1000)
        XCTAssertEqual(reading.state, .bad)
        XCTAssertTrue(reading.summary.hasPrefix("bad: clock 120.004 s behind"), reading.summary)
        XCTAssertTrue(reading.summary.contains("codes are checked against the corrected time"), reading.summary)
        XCTAssertTrue(reading.summary.hasSuffix("kernel: no NTP daemon is disciplining this clock"), reading.summary)
        XCTAssertTrue(reading.remedy?.contains("chronyc makestep") ?? false)
        XCTAssertTrue(reading.remedy?.contains("systemd-timesyncd") ?? false)

        var off = config
        off.compensation = false
        let warning = ClockPolicy.reading(measured(3), configuration: off, kernel: synced, bootTime: 1000)
        XCTAssertEqual(warning.state, .warning)
        XCTAssertTrue(warning.summary.contains("clock_compensation is off"), warning.summary)
        XCTAssertFalse(warning.compensation)
    }

    func testUnsynchronisedKernelIsReportedEvenWithoutServers() {
        let none = ClockConfiguration(servers: [])
        let reading = ClockPolicy.reading(ClockObservations(), configuration: none, kernel: unsynced, bootTime: 5)
        XCTAssertEqual(reading.state, .unknown)
        XCTAssertEqual(reading.summary, "unknown: NTP checks are off (ntp_servers is empty); "
                       + "kernel: no NTP daemon is disciplining this clock")
        XCTAssertEqual(reading.remedy, ClockPolicy.disciplineRemedy)
        XCTAssertFalse(reading.kernelSynchronized)
    }

    func testUnreachableIsUnknownButKeepsTheLastMeasurement() {
        let never = ClockObservations(roundsCompleted: 3, lastRoundFailure: "no NTP server answered (127.0.0.1:5000: no answer within 1.000 s)")
        let first = ClockPolicy.reading(never, configuration: config, kernel: synced, bootTime: 5)
        XCTAssertEqual(first.state, .unknown)
        XCTAssertNil(first.offsetSeconds)
        XCTAssertTrue(first.summary.hasPrefix("unknown: no NTP server answered"), first.summary)
        XCTAssertTrue(first.remedy?.contains("127.0.0.1:5000") ?? false)

        var lost = measured(20, at: 1000)
        lost.lastRoundFailure = "no NTP server answered"
        let later = ClockPolicy.reading(lost, configuration: config, kernel: synced, bootTime: 1000 + 720)
        XCTAssertEqual(later.state, .unknown)
        XCTAssertEqual(later.offsetSeconds, 20)
        XCTAssertTrue(later.summary.contains("last measured 12 minutes ago: clock 20.000 s ahead by 127.0.0.1:5000"), later.summary)

        let notYet = ClockPolicy.reading(ClockObservations(), configuration: config, kernel: synced, bootTime: 5)
        XCTAssertTrue(notYet.summary.hasPrefix("unknown: not measured yet"), notYet.summary)
    }

    func testFormatting() {
        XCTAssertEqual(formatSeconds(12.3456, signed: true), "+12.346 s")
        XCTAssertEqual(formatSeconds(-0.0004, signed: true), "-0.000 s")
        XCTAssertEqual(formatSeconds(120), "120.000 s")
        XCTAssertEqual(ClockPolicy.ageText(59), "59 s")
        XCTAssertEqual(ClockPolicy.ageText(3 * 3600), "3 hours")
    }
}

final class ClockConfigurationTests: XCTestCase {
    func testServerNames() throws {
        XCTAssertEqual(try NTPServerName(parsing: "time1.google.com"), NTPServerName(host: "time1.google.com", port: 123))
        XCTAssertEqual(try NTPServerName(parsing: "127.0.0.1:4123"), NTPServerName(host: "127.0.0.1", port: 4123))
        XCTAssertEqual(try NTPServerName(parsing: "[::1]:4123"), NTPServerName(host: "::1", port: 4123))
        XCTAssertEqual(try NTPServerName(parsing: "[::1]"), NTPServerName(host: "::1", port: 123))
        XCTAssertEqual(try NTPServerName(parsing: "fe80::1"), NTPServerName(host: "fe80::1", port: 123))
        XCTAssertEqual(NTPServerName(host: "::1", port: 4123).description, "[::1]:4123")
        XCTAssertEqual(NTPServerName(host: "pool.ntp.org").description, "pool.ntp.org")
        for bad in ["", ":123", "host:0", "host:65536", "host:abc", "[::1", "[::1]x", "ho st", "h\u{e9}t", "[]:5"] {
            XCTAssertThrowsError(try NTPServerName(parsing: bad), bad)
        }
    }

    func testProblems() {
        XCTAssertEqual(ClockConfiguration().problems(), [])
        XCTAssertEqual(ClockConfiguration(servers: ["127.0.0.1:1"], intervalSeconds: 1, timeoutSeconds: 0.5, samples: 1).problems(), [])
        let bad = ClockConfiguration(servers: ["a:0"], intervalSeconds: 0, timeoutSeconds: 0, samples: 0, warnThresholdSeconds: -1)
        XCTAssertEqual(bad.problems().count, 5, "\(bad.problems())")
    }

    // Numeric addresses only: a name would send a DNS query off this machine.
    func testResolvesLoopback() throws {
        let addresses = try SNTPClient.resolve(NTPServerName(host: "127.0.0.1", port: 4123)).get()
        XCTAssertEqual(addresses.map(\.description), ["127.0.0.1:4123"])
        let v6 = try SNTPClient.resolve(NTPServerName(host: "::1", port: 4123)).get()
        XCTAssertEqual(v6.map(\.description), ["[::1]:4123"])
        XCTAssertTrue(v6[0].sameEndpoint(as: v6[0]))
        XCTAssertFalse(v6[0].sameEndpoint(as: addresses[0]))
        let otherPort = try SNTPClient.resolve(NTPServerName(host: "127.0.0.1", port: 4124)).get()
        XCTAssertFalse(otherPort[0].sameEndpoint(as: addresses[0]))
    }
}

final class ClockMonitorTests: XCTestCase {
    func testWithoutServersItUsesTheLocalClockAndSaysWhy() {
        let monitor = ClockMonitor(configuration: ClockConfiguration(servers: []), logger: Logger(label: "test"),
                                   kernelReader: { KernelClockStatus(synchronized: true) })
        monitor.start()
        defer { monitor.stop() }
        let reading = monitor.reading()
        XCTAssertEqual(reading.state, .unknown)
        XCTAssertTrue(reading.summary.contains("ntp_servers is empty"), reading.summary)
        XCTAssertEqual(Double(monitor.verificationTime()), Date().timeIntervalSince1970, accuracy: 2)
        XCTAssertNil(monitor.suspectOffset())
    }

    func testSilentServerLeavesStateUnknown() throws {
        // A bound UDP socket that never answers.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                XCTAssertEqual(bind(fd, $0, length), 0)
                XCTAssertEqual(getsockname(fd, $0, &length), 0)
            }
        }
        let port = UInt16(bigEndian: address.sin_port)
        let monitor = ClockMonitor(configuration: ClockConfiguration(servers: ["127.0.0.1:\(port)"], intervalSeconds: 1,
                                                                     timeoutSeconds: 0.2, samples: 2),
                                   logger: Logger(label: "test"), kernelReader: { KernelClockStatus(synchronized: false) })
        monitor.measureOnce()
        let reading = monitor.reading()
        XCTAssertEqual(reading.state, .unknown)
        XCTAssertTrue(reading.summary.hasPrefix("unknown: no NTP server answered (127.0.0.1:\(port): no answer within 0.200 s)"),
                      reading.summary)
        // Both requests reached the socket.
        var buffer = [UInt8](repeating: 0, count: 100)
        var received = 0
        while recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) == 48 { received += 1 }
        XCTAssertEqual(received, 2)
    }
}
