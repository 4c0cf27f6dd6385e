// `twofactor admin health`: is the daemon's store reachable, what went wrong last, and the clock.
import ArgumentParser
import TwoFactorWire

struct AdminHealth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Show the daemon's store (reachable, last error) and clock verdict.",
        discussion: """
            Asks the daemon to read from its store now (at most 2 seconds) and shows this node's \
            name (node_name), the store's kind and location (never its password), whether the \
            read succeeded and how long it took, how many store operations failed since the \
            daemon started and the last failure, and the clock verdict (see 'twofactor admin \
            clock' for the details). Exit status 0 when the store answered, 1 when it did not.

            With --json: {"node", "store_kind", "store_location", "store_reachable", \
            "store_latency_micros", "store_errors", "store_last_error", "store_last_error_at", \
            "clock_state", "clock_offset_micros", "message"} (null when not known).

            \(ExitStatusHelp.table)

            EXAMPLE
              sudo twofactor admin health
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let response = try global.client.send(WireMessage(operation: .health), account: adminAccount())
        let reachable = response.bool(.storeReachable) ?? false
        if global.json {
            JSON.object([
                ("node", .optionalString(response.string(.nodeName))),
                ("store_kind", .optionalString(response.string(.storeKind))),
                ("store_location", .optionalString(response.string(.storeLocation))),
                ("store_reachable", .bool(reachable)),
                ("store_latency_micros", .optionalInt(response.int64(.storeLatencyMicros))),
                ("store_errors", .optionalInt(response.uint32(.storeErrors))),
                ("store_last_error", .optionalString(response.string(.storeLastError))),
                ("store_last_error_at", .timestamp(response.uint64(.storeLastErrorAt))),
                ("clock_state", .optionalString(response.string(.clockState))),
                ("clock_offset_micros", .optionalInt(response.int64(.clockOffsetMicros))),
                ("message", .optionalString(response.string(.message))),
            ]).print()
        } else {
            var fields = FieldList()
            if let node = response.string(.nodeName) { fields.add("Node", printable(node)) }
            let kind = response.string(.storeKind) ?? "unknown"
            let location = response.string(.storeLocation).map { " (\(printable($0)))" } ?? ""
            fields.add("Store", printable(kind) + location)
            let latency = response.int64(.storeLatencyMicros).map { ", read in \(formatMicros($0, signed: false))" } ?? ""
            fields.add("Reachable", reachable ? "yes" + latency : "no")
            fields.add("Store errors", String(response.uint32(.storeErrors) ?? 0) + " since the daemon started")
            if let error = response.string(.storeLastError) {
                let at = response.uint64(.storeLastErrorAt).map { " (\(TimeText.absolute($0)))" } ?? ""
                fields.add("Last store error", printable(error) + at)
            }
            var clock = response.string(.clockState) ?? "unknown"
            if let offset = response.int64(.clockOffsetMicros) { clock += ", offset \(formatMicros(offset, signed: true))" }
            fields.add("Clock", printable(clock))
            print("Health: \(reachable ? "ok" : "store unreachable")\n" + fields.rendered())
        }
        if !reachable { throw CLIError(.failure, "the daemon's store did not answer") }
    }
}
