// Sample selection, verdicts, compensation and the monitor's behaviour without servers.
import Logging
import XCTest
@testable import TwoFactorDaemon

final class ClockSelectionTests: XCTestCase {
    func sample(offset: Double, delay: Double, server: String = "a", boot: Double = 10) -> NTPSample {
        NTPSample(exchange: NTPExchange(serverAheadSeconds: -offset, delaySeconds: delay, stratum: 2),
                  server: server, localTime: 1000 + boot, bootTime: boot)
    }

    func source(_ server: String, _ offset: Double, delay: Double = 0.010) -> ClockMeasurement {
        ClockMeasurement(offsetSeconds: offset, delaySeconds: delay, server: server, stratum: 2,
                         localTime: 1000, bootTime: 10)
    }

    func testEachServerVotesOnceWithItsShortestRoundTrip() {
        let best = ClockSelection.bestPerServer([
            sample(offset: 5.0, delay: 0.080), sample(offset: 4.2, delay: 0.012, server: "b"),
            sample(offset: 4.9, delay: 0.040), sample(offset: 4.0, delay: 0.030, server: "b"),
        ])
        XCTAssertEqual(best.map(\.server), ["a", "b"])
        XCTAssertEqual(best.map(\.offsetSeconds), [4.9, 4.2])
        XCTAssertEqual(best.map(\.delaySeconds), [0.040, 0.012])
    }

    // The attack of issue 10: the liar's round trip is the shortest, and it is one of three.
    func testOneLiarAmongHonestServersIsAFalseticker() {
        let samples = [sample(offset: 0.002, delay: 0.050, server: "h1"), sample(offset: 3000, delay: 0.0001, server: "liar"),
                       sample(offset: -0.003, delay: 0.048, server: "h2")]
        let selection = ClockSelection.select(samples, minimumSources: 2)
        XCTAssertEqual(selection.truechimers.map(\.server), ["h1", "h2"])
        XCTAssertEqual(selection.falsetickers.map(\.server), ["liar"])
        XCTAssertEqual(selection.agreed?.server, "h2") // the shortest round trip among those that agree
    }

    func testALoneServerIsNeverAgreement() {
        let selection = ClockSelection.select(sources: [source("only", 3000)], minimumSources: 2)
        XCTAssertNil(selection.agreed)
        XCTAssertEqual(selection.truechimers, [])
        XCTAssertEqual(selection.falsetickers, [])
        XCTAssertEqual(selection.sources.map(\.server), ["only"])
        XCTAssertNil(ClockSelection.select(sources: [], minimumSources: 2).agreed)
    }

    func testTwoServersThatDisagreeGiveNothingAndNameNobody() {
        let selection = ClockSelection.select(sources: [source("a", 0), source("b", 120)], minimumSources: 2)
        XCTAssertNil(selection.agreed)
        XCTAssertEqual(selection.truechimers, [])
        XCTAssertEqual(selection.falsetickers, [], "with two servers nobody can tell which one lies")
    }

    func testAgreementIsWithinTheToleranceAndHalfTheRoundTrips() {
        // 1 s apart with short round trips: agree. 1.2 s apart: only with 0.2 s of round trip more.
        XCTAssertNotNil(ClockSelection.select(sources: [source("a", 10.0, delay: 0), source("b", 11.0, delay: 0)],
                                              minimumSources: 2).agreed)
        XCTAssertNil(ClockSelection.select(sources: [source("a", 10.0, delay: 0), source("b", 11.2, delay: 0)],
                                           minimumSources: 2).agreed)
        XCTAssertNotNil(ClockSelection.select(sources: [source("a", 10.0, delay: 0.2), source("b", 11.2, delay: 0.2)],
                                              minimumSources: 2).agreed)
    }

    func testTheMajorityMustBeStrict() {
        // Two against two: no majority, whichever pair is right.
        let tie = ClockSelection.select(sources: [source("h1", 0), source("h2", 0.01), source("l1", 600), source("l2", 600)],
                                        minimumSources: 2)
        XCTAssertNil(tie.agreed)
        XCTAssertEqual(tie.falsetickers, [])
        // Three against two: the three win, the two are named.
        let majority = ClockSelection.select(sources: [source("h1", 0), source("l1", 600), source("h2", 0.01),
                                                       source("l2", 600.2), source("h3", -0.02)], minimumSources: 2)
        XCTAssertEqual(majority.truechimers.map(\.server), ["h1", "h2", "h3"])
        XCTAssertEqual(majority.falsetickers.map(\.server), ["l1", "l2"])
        XCTAssertNotNil(majority.agreed)
    }

    func testClockMinSourcesAboveTheMajority() {
        let sources = [source("h1", 0), source("h2", 0.01), source("liar", 600)]
        let selection = ClockSelection.select(sources: sources, minimumSources: 3)
        XCTAssertNil(selection.agreed, "two agree, three are required")
        XCTAssertEqual(selection.falsetickers.map(\.server), ["liar"], "still outvoted")
        XCTAssertNotNil(ClockSelection.select(sources: sources, minimumSources: 2).agreed)
        // Never fewer than two, whatever the caller asks.
        XCTAssertNil(ClockSelection.select(sources: [source("a", 5)], minimumSources: 1).agreed)
    }

    func testMarzullo() {
        XCTAssertEqual(ClockSelection.majorityIntersection([(0, 2), (1, 3), (5, 6)]), [0, 1])
        XCTAssertEqual(ClockSelection.majorityIntersection([(0, 1), (1, 2)]), [0, 1], "touching intervals overlap")
        XCTAssertEqual(ClockSelection.majorityIntersection([(0, 10), (1, 2), (1.5, 3), (5, 6)]), [0, 1, 2])
        XCTAssertNil(ClockSelection.majorityIntersection([(0, 1), (2, 3), (4, 5)]), "no majority")
        // Two different majorities ({0, 1} on [1, 2], {1, 2} on [2.5, 3]): which is the falseticker?
        XCTAssertNil(ClockSelection.majorityIntersection([(0, 2), (1, 3), (2.5, 4)]))
        XCTAssertNil(ClockSelection.majorityIntersection([(0, 1), (2, 3)]))
        XCTAssertNil(ClockSelection.majorityIntersection([]))
        XCTAssertNil(ClockSelection.majorityIntersection([(0, .nan), (0, 1)]))
        // A wide interval joins two separate pairs equally well: ambiguous, so nobody is trusted.
        XCTAssertNil(ClockSelection.majorityIntersection([(0, 10), (0, 1), (9, 10)]))
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
    let config = ClockConfiguration.testing(servers: ["127.0.0.1:5000"], intervalSeconds: 60, warnThresholdSeconds: 10)
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
        XCTAssertEqual(ClockPolicy.compensationMaximumAge(intervalSeconds: 900), 1800)
        XCTAssertEqual(ClockPolicy.compensationMaximumAge(intervalSeconds: 86_400), 172_800)
    }

    /// Observations whose offset two consecutive agreeing rounds confirmed, the last ending at `boot`.
    func confirmed(_ offset: Double, at boot: Double = 1000, localTime: Double = 1_795_951_234) -> ClockObservations {
        var obs = measured(offset, at: boot, localTime: localTime)
        obs.confirmed = obs.measurement
        obs.confirmedAt = boot
        return obs
    }

    func time(_ obs: ClockObservations, _ configuration: ClockConfiguration? = nil, kernel: KernelClockStatus? = nil,
              boot: Double, local: Double) -> Int64 {
        ClockPolicy.verificationTime(obs, configuration: configuration ?? config, kernel: kernel ?? unsynced,
                                     bootTime: boot, localTime: local)
    }

    func testCompensationUsesTheConfirmedOffset() {
        let obs = confirmed(120, at: 1000, localTime: 1_795_951_234)
        // 10 s later by both clocks: true time is local − 120.
        XCTAssertEqual(time(obs, boot: 1010, local: 1_795_951_244.7), 1_795_951_124)
        // Someone stepped the wall clock an hour forward since: the boot clock keeps us right.
        XCTAssertEqual(time(obs, boot: 1010, local: 1_795_954_844.7), 1_795_951_124)
        var off = config
        off.compensation = false
        XCTAssertEqual(time(obs, off, boot: 1010, local: 1_795_951_244.7), 1_795_951_244)
        XCTAssertEqual(ClockPolicy.correction(obs, configuration: off, kernel: unsynced, bootTime: 1010),
                       .notApplied("clock_compensation is off"))
    }

    func testAMeasurementThatIsNotConfirmedIsNeverApplied() {
        // What the old daemon did: one round, one server, and verification time moved by it.
        let obs = measured(120, at: 1000, localTime: 1_795_951_234)
        XCTAssertEqual(time(obs, boot: 1010, local: 1_795_951_244.7), 1_795_951_244)
    }

    func testNoCompensationWhileTheKernelIsSynchronised() {
        let obs = confirmed(120, at: 1000, localTime: 1_795_951_234)
        XCTAssertEqual(time(obs, kernel: synced, boot: 1010, local: 1_795_951_244.7), 1_795_951_244)
        guard case .notApplied(let why) = ClockPolicy.correction(obs, configuration: config, kernel: synced, bootTime: 1010)
        else { return XCTFail("applied with a synchronised kernel") }
        XCTAssertTrue(why.contains("NTP daemon keeps this clock synchronised"), why)
    }

    func testOffsetsBeyondTheCompensationBoundAreNotCompensated() {
        XCTAssertEqual(DaemonConfig().clockConfiguration.compensationMaxSeconds, 180)
        let obs = confirmed(120, at: 1000, localTime: 1_795_951_234)
        var bounded = config
        bounded.compensationMaxSeconds = 119
        XCTAssertEqual(time(obs, bounded, boot: 1010, local: 1_795_951_244.7), 1_795_951_244)
        // The hint still names the offset: the clock is wrong, it just is not trusted that far.
        XCTAssertEqual(ClockPolicy.suspectOffset(obs, configuration: bounded, bootTime: 1010), 120)
        bounded.compensationMaxSeconds = 120
        XCTAssertEqual(time(obs, bounded, boot: 1010, local: 1_795_951_244.7), 1_795_951_124)
    }

    func testAConfirmedOffsetExpiresAfterTwoIntervals() {
        // ntp_interval 60: applied up to 120 s after the confirming round, not after.
        let obs = confirmed(120, at: 1000)
        XCTAssertEqual(time(obs, boot: 1000 + 120, local: 5000.2), Int64(1_795_951_234 - 120 + 120))
        XCTAssertEqual(time(obs, boot: 1000 + 121, local: 5000.2), 5000)
        guard case .notApplied(let why) = ClockPolicy.correction(obs, configuration: config, kernel: unsynced, bootTime: 1121)
        else { return XCTFail("a stale offset was applied") }
        XCTAssertTrue(why.contains("more than twice ntp_interval"), why)
        // The diagnosis and the rejection hint may still use it for a while.
        XCTAssertEqual(ClockPolicy.suspectOffset(obs, configuration: config, bootTime: 1121), 120)
        XCTAssertEqual(time(ClockObservations(), boot: 1, local: 77.9), 77)
    }

    func testLastConfirmedOffsetStillAppliesWhenARoundFails() {
        var obs = confirmed(120, at: 1000, localTime: 1_795_951_234)
        ClockPolicy.record(ClockSelection(sources: []), failure: "no NTP server answered", finishedAt: 1062, into: &obs)
        XCTAssertEqual(obs.lastRoundFailure, "no NTP server answered")
        XCTAssertEqual(time(obs, boot: 1100, local: 0), 1_795_951_214)
        XCTAssertEqual(ClockPolicy.suspectOffset(obs, configuration: config, bootTime: 1100), 120)
        let reading = ClockPolicy.reading(obs, configuration: config, kernel: unsynced, bootTime: 1100)
        XCTAssertTrue(reading.summary.contains("codes are still checked against the corrected time"), reading.summary)
        XCTAssertEqual(reading.correctionSeconds, 120)
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
        let reading = ClockPolicy.reading(confirmed(-120.004), configuration: config, kernel: unsynced, bootTime: 1000)
        XCTAssertEqual(reading.state, .bad)
        XCTAssertEqual(reading.correctionSeconds, -120.004)
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
        let none = ClockConfiguration.testing(servers: [])
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

/// How rounds become a confirmed offset: agreement, two consecutive rounds, falsetickers.
final class ClockRoundRulesTests: XCTestCase {
    let config = ClockConfiguration.testing(servers: ["h1", "h2", "l"], intervalSeconds: 60, warnThresholdSeconds: 10)
    let unsynced = KernelClockStatus(synchronized: false)

    func source(_ server: String, _ offset: Double, boot: Double, delay: Double = 0.010) -> ClockMeasurement {
        ClockMeasurement(offsetSeconds: offset, delaySeconds: delay, server: server, stratum: 2,
                         localTime: 1_795_951_234 + boot, bootTime: boot)
    }

    /// One round at boot time `boot` with these (server, offset) answers.
    func round(_ answers: [(String, Double)], boot: Double, into obs: inout ClockObservations) {
        let selection = ClockSelection.select(sources: answers.map { source($0.0, $0.1, boot: boot) }, minimumSources: 2)
        ClockPolicy.record(selection, failure: "no NTP server answered", finishedAt: boot + 1, into: &obs)
    }

    func correction(_ obs: ClockObservations, at boot: Double) -> ClockCorrection {
        ClockPolicy.correction(obs, configuration: config, kernel: unsynced, bootTime: boot)
    }

    func applied(_ obs: ClockObservations, at boot: Double) -> Double? {
        if case .applied(let m) = correction(obs, at: boot) { return m.offsetSeconds }
        return nil
    }

    func testAnAgreedOffsetIsAppliedFromTheSecondRound() {
        var obs = ClockObservations()
        round([("h1", 120.0), ("h2", 120.01)], boot: 100, into: &obs)
        XCTAssertEqual(obs.measurement?.offsetSeconds, 120.0)
        XCTAssertNil(applied(obs, at: 102))
        XCTAssertEqual(correction(obs, at: 102), .notApplied("the offset is not yet confirmed by a second round"))
        round([("h1", 120.02), ("h2", 120.0)], boot: 160, into: &obs)
        XCTAssertEqual(applied(obs, at: 162), 120.02)
        XCTAssertEqual(obs.roundsCompleted, 2)
    }

    func testRoundsThatDoNotRepeatTheOffsetConfirmNothing() {
        var obs = ClockObservations()
        round([("h1", 0.0), ("h2", 0.01)], boot: 100, into: &obs)
        round([("h1", 120.0), ("h2", 120.01)], boot: 160, into: &obs) // both servers turned
        XCTAssertNil(applied(obs, at: 162))
        round([("h1", 120.0), ("h2", 120.01)], boot: 220, into: &obs)
        XCTAssertEqual(applied(obs, at: 222), 120.0)
        // Drift between rounds is allowed for: 500 ppm of 3600 s is 1.8 s, on top of the 1 s.
        var slow = ClockObservations()
        round([("h1", 10.0), ("h2", 10.0)], boot: 0, into: &slow)
        round([("h1", 12.7), ("h2", 12.7)], boot: 3600, into: &slow)
        XCTAssertNotNil(slow.confirmed)
        XCTAssertFalse(ClockPolicy.consistent(source("a", 10, boot: 0), source("a", 11.1, boot: 10)))
    }

    func testAFailedRoundBreaksTheChain() {
        var obs = ClockObservations()
        round([("h1", 120.0), ("h2", 120.01)], boot: 100, into: &obs)
        round([], boot: 160, into: &obs)
        XCTAssertEqual(obs.lastRoundFailure, "no NTP server answered")
        round([("h1", 120.0), ("h2", 120.01)], boot: 220, into: &obs)
        XCTAssertNil(applied(obs, at: 222), "the two agreeing rounds were not consecutive")
    }

    func testALoneServerIsNeverAppliedHoweverOftenItRepeats() {
        var obs = ClockObservations()
        for boot in stride(from: 100.0, through: 700, by: 60) { round([("l", 3000)], boot: boot, into: &obs) }
        XCTAssertNil(applied(obs, at: 702))
        XCTAssertEqual(obs.measurement?.offsetSeconds, 3000, "still diagnosed")
        let reading = ClockPolicy.reading(obs, configuration: config, kernel: unsynced, bootTime: 702)
        XCTAssertEqual(reading.state, .bad)
        XCTAssertNil(reading.correctionSeconds)
        XCTAssertTrue(reading.summary.contains("only one NTP server answered; correction needs 2 servers that agree "
                                               + "(clock_min_sources): codes are checked against this clock"), reading.summary)
        XCTAssertTrue(reading.remedy?.contains("chronyc makestep") ?? false)
        XCTAssertTrue(reading.remedy?.contains("list at least 2 independent servers") ?? false, reading.remedy ?? "")
    }

    func testALiarAmongHonestServersIsNamedAndIgnored() {
        var obs = ClockObservations()
        round([("h1", 0.001), ("l", 3000), ("h2", -0.002)], boot: 100, into: &obs)
        round([("h1", 0.002), ("l", 3000), ("h2", -0.001)], boot: 160, into: &obs)
        XCTAssertEqual(applied(obs, at: 162).map { abs($0) < 0.01 }, true)
        let reading = ClockPolicy.reading(obs, configuration: config, kernel: unsynced, bootTime: 162)
        XCTAssertEqual(reading.falsetickers, ["l"])
        XCTAssertEqual(reading.state, .ok)
        XCTAssertTrue(reading.summary.contains("falsetickers (ignored): l (clock 3000.000 s ahead)"), reading.summary)
    }

    func testALiarAfterGoodRoundsCannotMoveTime() {
        var obs = ClockObservations()
        round([("h1", 120.0), ("l", 120.0), ("h2", 120.01)], boot: 100, into: &obs)
        round([("h1", 120.0), ("l", 120.0), ("h2", 120.01)], boot: 160, into: &obs)
        XCTAssertEqual(applied(obs, at: 162), 120.0)
        // The third server turns: outvoted, the honest offset stays.
        round([("h1", 120.0), ("l", 3120), ("h2", 120.01)], boot: 220, into: &obs)
        round([("h1", 120.0), ("l", 3120), ("h2", 120.01)], boot: 280, into: &obs)
        XCTAssertEqual(applied(obs, at: 282).map { abs($0 - 120) < 0.02 }, true)
        XCTAssertEqual(obs.lastSelection?.falsetickers.map(\.server), ["l"])

        // With only two servers, one that turns makes a disagreement: the last confirmed honest
        // offset runs out after two intervals, and nothing new is confirmed.
        var pair = ClockObservations()
        round([("h1", 120.0), ("l", 120.0)], boot: 100, into: &pair)
        round([("h1", 120.0), ("l", 120.0)], boot: 160, into: &pair)
        for boot in [220.0, 280, 340] { round([("h1", 120.0), ("l", 3120)], boot: boot, into: &pair) }
        XCTAssertEqual(applied(pair, at: 222), 120.0)
        XCTAssertNil(applied(pair, at: 342))
        XCTAssertTrue(pair.lastRoundFailure?.hasPrefix("the NTP servers disagree (h1: clock 120.000 s ahead; l: clock 3120.000 s ahead)") ?? false,
                      pair.lastRoundFailure ?? "")
        XCTAssertEqual(pair.lastSelection?.falsetickers, [])
        let reading = ClockPolicy.reading(pair, configuration: config, kernel: unsynced, bootTime: 342)
        XCTAssertEqual(reading.state, .unknown)
        XCTAssertEqual(reading.offsetSeconds, 120.0, "the last agreed measurement is still shown")
    }

    func testClockMinSourcesThree() {
        var three = config
        three.minimumSources = 3
        var obs = ClockObservations()
        for boot in [100.0, 160] {
            let selection = ClockSelection.select(sources: [source("h1", 120, boot: boot), source("h2", 120, boot: boot),
                                                            source("l", 0, boot: boot)], minimumSources: three.minimumSources)
            ClockPolicy.record(selection, failure: "", finishedAt: boot, into: &obs)
        }
        XCTAssertEqual(ClockPolicy.correction(obs, configuration: three, kernel: unsynced, bootTime: 162),
                       .notApplied("only 2 NTP servers agree; correction needs 3 servers that agree (clock_min_sources)"))
        XCTAssertEqual(obs.measurement?.offsetSeconds, 120, "the majority is still diagnosed")
        XCTAssertEqual(obs.lastSelection?.falsetickers.map(\.server), ["l"])
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
        XCTAssertEqual(try NTPServerName(parsing: "fe80::1%eth0"), NTPServerName(host: "fe80::1%eth0", port: 123))
        XCTAssertEqual(try NTPServerName(parsing: "[2001:db8::7]:4123").description, "[2001:db8::7]:4123")
        for bad in ["", ":123", "host:0", "host:65536", "host:abc", "[::1", "[::1]x", "ho st", "h\u{e9}t", "[]:5",
                    "bad:host:99999", "[pool.ntp.org]:123", "::1%", "fe80::1%e th", "ho!st", "a/b:123"] {
            XCTAssertThrowsError(try NTPServerName(parsing: bad), bad)
        }
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
        let monitor = ClockMonitor(configuration: ClockConfiguration.testing(servers: []), logger: Logger(label: "test"),
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
        let monitor = ClockMonitor(configuration: ClockConfiguration.testing(servers: ["127.0.0.1:\(port)"], intervalSeconds: 1,
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

extension ClockConfiguration {
    /// The daemon's defaults, with the servers (ntp_servers entries) and values a test needs.
    static func testing(servers: [String], intervalSeconds: Double? = nil, timeoutSeconds: Double? = nil,
                        samples: Int? = nil, warnThresholdSeconds: Double? = nil) -> ClockConfiguration {
        var configuration = DaemonConfig().clockConfiguration
        configuration.servers = servers.map { try! NTPServerName(parsing: $0) }
        if let intervalSeconds { configuration.intervalSeconds = intervalSeconds }
        if let timeoutSeconds { configuration.timeoutSeconds = timeoutSeconds }
        if let samples { configuration.samples = samples }
        if let warnThresholdSeconds { configuration.warnThresholdSeconds = warnThresholdSeconds }
        return configuration
    }
}
