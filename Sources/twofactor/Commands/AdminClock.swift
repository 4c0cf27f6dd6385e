// `twofactor admin clock`: the daemon's view of this server's clock against NTP.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorWire

struct AdminClock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clock",
        abstract: "Check this machine's clock, which TOTP codes depend on.",
        discussion: """
            Codes from the app are only accepted when this machine's clock and the phone's agree \
            to within about 30 seconds. Shows the daemon's last measurement against its time \
            servers: the offset (this clock minus true time), the server and its stratum, the \
            round-trip delay, how old the measurement is, whether the kernel reports the clock \
            as synchronized, and a verdict (ok, warning, bad or unknown) with what to do about \
            it. Also whether codes are checked against corrected time now (only when at least \
            clock_min_sources servers agree over two rounds and no NTP daemon keeps the clock \
            synchronized), and the falsetickers: servers the others outvoted, whose answers are \
            ignored. Fields the daemon did not measure are left out. Asks nothing. The exit \
            status is 0 whatever the verdict; read "state" from --json in monitoring scripts.

            With --json: {"state", "offset_micros", "server", "stratum", "delay_micros", \
            "measured_at", "age_seconds", "kernel_synchronized", "kernel_error_micros", \
            "compensation", "correction_micros", "falsetickers", "remedy", "message"} (null \
            when not measured or not corrected; falsetickers is a list, maybe empty).

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin clock
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let response = try global.client.send(WireMessage(operation: .clockStatus), account: adminAccount())
        let now = TimeText.now()
        let measuredAt = response.uint64(.clockMeasuredAt)
        let age = measuredAt.map { now > $0 ? now - $0 : 0 }
        if global.json {
            JSON.object([
                ("state", .string(response.string(.clockState) ?? "unknown")),
                ("offset_micros", .optionalInt(response.int64(.clockOffsetMicros))),
                ("server", .optionalString(response.string(.clockServer))),
                ("stratum", .optionalInt(response.uint8(.clockStratum))),
                ("delay_micros", .optionalInt(response.int64(.clockDelayMicros))),
                ("measured_at", .timestamp(measuredAt)),
                ("age_seconds", .optionalInt(age)),
                ("kernel_synchronized", response.bool(.kernelSynchronized).map(JSON.bool) ?? .null),
                ("kernel_error_micros", .optionalInt(response.int64(.kernelErrorMicros))),
                ("compensation", response.bool(.clockCompensation).map(JSON.bool) ?? .null),
                ("correction_micros", .optionalInt(response.int64(.clockCorrectionMicros))),
                ("falsetickers", .array(response.allStrings(.clockFalseticker).map(JSON.string))),
                ("remedy", .optionalString(response.string(.clockRemedy))),
                ("message", .optionalString(response.string(.message))),
            ]).print()
            return
        }
        let state = response.string(.clockState) ?? "unknown"
        var fields = FieldList()
        if let offset = response.int64(.clockOffsetMicros) {
            fields.add("Offset", "\(formatMicros(offset, signed: true)) (this clock minus true time)")
        }
        if let server = response.string(.clockServer) {
            let stratum = response.uint8(.clockStratum).map { " (stratum \($0))" } ?? ""
            fields.add("Time server", printable(server) + stratum)
        } else if let stratum = response.uint8(.clockStratum) {
            fields.add("Stratum", String(stratum))
        }
        if let delay = response.int64(.clockDelayMicros) {
            fields.add("Round-trip delay", formatMicros(delay, signed: false))
        }
        if let measuredAt, let age {
            fields.add("Measured", "\(TimeText.absolute(measuredAt)) (\(TimeText.duration(age)) ago)")
        }
        if let synchronized = response.bool(.kernelSynchronized) {
            var value = synchronized ? "yes" : "no"
            if let error = response.int64(.kernelErrorMicros) {
                value += " (estimated error \(formatMicros(error, signed: false)))"
            }
            fields.add("Kernel synchronized", value)
        }
        if let compensation = response.bool(.clockCompensation) {
            let value: String
            if let correction = response.int64(.clockCorrectionMicros) {
                value = "on: codes are checked against the corrected time (\(formatMicros(correction, signed: true)))"
            } else {
                value = compensation ? "on, but not applied now: codes are checked against this clock" : "off"
            }
            fields.add("Compensation", value)
        }
        let falsetickers = response.allStrings(.clockFalseticker)
        if !falsetickers.isEmpty {
            fields.add("Falsetickers", falsetickers.map { printable($0) }.joined(separator: ", ")
                       + " (outvoted by the other servers; ignored)")
        }
        var out = "Clock check: \(printable(state))"
        if !fields.items.isEmpty { out += "\n" + fields.rendered() }
        if let message = response.string(.message), !message.isEmpty { out += "\n\n" + printable(message) }
        if let remedy = response.string(.clockRemedy), !remedy.isEmpty { out += "\n\nRemedy: " + printable(remedy) }
        print(out)
    }
}

/// "+12.345 s", "-3.210 ms", "0.450 ms".
func formatMicros(_ micros: Int64, signed: Bool) -> String {
    let sign = micros < 0 ? "-" : (signed ? "+" : "")
    let magnitude = micros.magnitude
    func threeDecimals(_ whole: UInt64, _ thousandths: UInt64) -> String {
        let fraction = String(thousandths)
        return "\(whole).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
    if magnitude >= 1_000_000 {
        return sign + threeDecimals(magnitude / 1_000_000, (magnitude % 1_000_000) / 1000) + " s"
    }
    return sign + threeDecimals(magnitude / 1000, magnitude % 1000) + " ms"
}
