import CPAMShim

// Log lines, through pam_syslog (the C shim): what goes in them from outside passes through
// `printable` (Product.swift) first. Codes and passwords are never logged.

func log(_ pamh: OpaquePointer?, _ priority: Int32, _ message: String) {
    message.withCString { twofactor_syslog(pamh, priority, $0) }
}

extension Authentication {
    /// The user name for log lines, built only when something is logged.
    var userText: String { userPointer.map { printable(cStringBytes($0), limit: 64) } ?? "(unknown)" }

    func debug(_ text: @autoclosure () -> String) {
        if options.debug { log(pamh, LOG_DEBUG, text()) }
    }
}
