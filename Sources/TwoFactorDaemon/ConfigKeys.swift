// The one definition of every twofactord.conf key: its name, the values it takes (type and range),
// its default and its documentation. ConfigParser (and so --check-config) parses with it,
// `twofactord --print-default-config` writes config/twofactord.conf from it, `--print-config`
// shows a file's effective values with it, and a test checks twofactord(8)'s key list against it.
// A key's default is the initial value of its DaemonConfig field, read through the key path.
import Foundation
import TwoFactorCore

/// A value that a key does not take, for ConfigParser's "KEY must be REQUIREMENT, got 'VALUE'".
public struct ConfigValueError: Error, Equatable {
    /// Completes "KEY must be ...", e.g. "a whole number from 6 to 8".
    public var requirement: String
    /// The offending text: the whole value, or the bad entry of a list.
    public var got: String
    /// Why, when the requirement alone does not say (e.g. "port must be 1 to 65535").
    public var reason: String?
}

/// How a key's text becomes a value and back.
public struct ConfigType<Value: Sendable>: Sendable {
    /// Completes "KEY must be ...": "a whole number from 6 to 8".
    public let requirement: String
    /// The allowed values, short, as the example file shows them: "6 to 8".
    public let allowed: String
    let parse: @Sendable (String) throws(ConfigValueError) -> Value
    let format: @Sendable (Value) -> String

    init(requirement: String, allowed: String, parse: @escaping @Sendable (String) throws(ConfigValueError) -> Value,
         format: @escaping @Sendable (Value) -> String) {
        self.requirement = requirement
        self.allowed = allowed
        self.parse = parse
        self.format = format
    }

    /// A type whose values are checked by `accept` (nil: refused); `format` prints them back.
    init(requirement: String, allowed: String, accept: @escaping @Sendable (String) -> Value?,
         format: @escaping @Sendable (Value) -> String) {
        self.init(requirement: requirement, allowed: allowed, parse: { text throws(ConfigValueError) in
            guard let value = accept(text) else { throw ConfigValueError(requirement: requirement, got: text) }
            return value
        }, format: format)
    }
}

extension ConfigType where Value: FixedWidthInteger {
    static func integer(_ range: ClosedRange<Value>) -> ConfigType {
        ConfigType(requirement: "a whole number from \(range.lowerBound) to \(range.upperBound)",
                   allowed: "\(range.lowerBound) to \(range.upperBound)",
                   accept: { Value($0).flatMap { range.contains($0) ? $0 : nil } }, format: { "\($0)" })
    }
}

extension ConfigType where Value == Double {
    static func seconds(_ range: ClosedRange<Double>) -> ConfigType {
        let bounds = "\(formatNumber(range.lowerBound)) to \(formatNumber(range.upperBound))"
        return ConfigType(requirement: "a number of seconds from \(bounds)", allowed: "\(bounds) seconds",
                          accept: { Double($0).flatMap { $0.isFinite && range.contains($0) ? $0 : nil } },
                          format: formatNumber)
    }

    /// Whole numbers without ".0": "900", "0.05".
    static func formatNumber(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}

extension ConfigType where Value == Bool {
    static var boolean: ConfigType {
        ConfigType(requirement: "yes or no", allowed: "yes or no", accept: { text in
            switch text.lowercased() {
            case "yes", "true", "on": return true
            case "no", "false", "off": return false
            default: return nil
            }
        }, format: { $0 ? "yes" : "no" })
    }
}

extension ConfigType where Value == String {
    static var absolutePath: ConfigType {
        ConfigType(requirement: "an absolute path", allowed: "an absolute path",
                   accept: { $0.hasPrefix("/") && !$0.contains("\0") ? $0 : nil }, format: { $0 })
    }
}

extension ConfigType where Value: CaseIterable & RawRepresentable, Value.RawValue == String {
    /// One of the cases' raw values ("SHA1, SHA256 or SHA512"), letter case ignored if asked.
    static func choice(ignoringCase: Bool = false) -> ConfigType {
        let names = Value.allCases.map(\.rawValue)
        let spelled = names.dropLast().joined(separator: ", ") + " or " + names.last!
        let fold: @Sendable (String) -> String = { ignoringCase ? $0.lowercased() : $0 }
        return ConfigType(requirement: spelled, allowed: spelled, accept: { text in
            Value.allCases.first { fold($0.rawValue) == fold(text) }
        }, format: { $0.rawValue })
    }
}

/// One key of twofactord.conf.
public struct ConfigKey: Sendable {
    public let name: String
    /// Completes "KEY must be ...".
    public let requirement: String
    /// The allowed values, as the example file shows them after each key.
    public let allowed: String
    /// A heading that starts a new section of the example file before this key.
    public let section: String?
    /// The paragraph before the key in the example file; empty when the paragraph of the key
    /// before it covers this one too.
    public let doc: String
    /// Shown instead of the default where the default is this machine's (issuer: its host name).
    public let example: String?
    let apply: @Sendable (String, inout DaemonConfig) throws(ConfigValueError) -> Void
    let value: @Sendable (DaemonConfig) -> String

    init<Value>(_ name: String, _ type: ConfigType<Value>, _ field: WritableKeyPath<DaemonConfig, Value> & Sendable,
                section: String? = nil, example: String? = nil, doc: String = "") {
        self.name = name
        requirement = type.requirement
        allowed = type.allowed
        self.section = section
        self.example = example
        self.doc = doc
        apply = { text, config throws(ConfigValueError) in config[keyPath: field] = try type.parse(text) }
        value = { type.format($0[keyPath: field]) }
    }

    /// The default, as a config file spells it.
    public var defaultText: String { value(DaemonConfig()) }

    /// `config`'s value of this key, as a config file spells it.
    public func text(in config: DaemonConfig) -> String { value(config) }

    /// Sets the key in `config` from its text in a config file.
    public func set(_ text: String, in config: inout DaemonConfig) throws(ConfigValueError) { try apply(text, &config) }
}

public enum ConfigKeys {
    /// Every key, in the order of the example file.
    public static let all: [ConfigKey] = [
        ConfigKey("socket", .absolutePath, \.socket, section: "Socket", doc: """
            Unix socket for pam_twofactor and the twofactor command. Ignored when systemd passes the socket
            (twofactord.socket). The parent directory is created (0755) if missing.
            """),
        ConfigKey("socket_mode", octalMode, \.socketMode, doc: """
            Permission bits of the socket file (octal). Anyone may connect: what a caller may do is decided
            from its peer credentials (root verifies for anyone, a user only for itself).
            """),
        ConfigKey("max_connections", .integer(1...100_000), \.maxConnections, doc: """
            Most connections of non-root callers served at once (one user may hold at most 8 of them); a
            connection over the limit is answered "busy" and closed. Root (sshd, sudo, login) has four
            times as many slots of its own, so no local user can crowd logins out.
            """),
        ConfigKey("read_timeout", .seconds(0.001...3600), \.readTimeout, doc: """
            Seconds a client has to send a complete request before it is disconnected.
            """),

        ConfigKey("state_directory", .absolutePath, \.stateDirectory, section: "Storage and keys", doc: """
            Directory of the SQLite database twofactor.db (created mode 0700). The daemon refuses to start if
            group or others can write it, or if it belongs to anyone but root or the daemon's user.
            """),
        ConfigKey("key_file", .absolutePath, \.keyFile, doc: """
            Master key (32 random bytes), created mode 0600 on first start. TOTP secrets are encrypted with
            AES-256-GCM under a key derived from it and recovery codes are kept only as keyed hashes, so the
            database alone reveals nothing. The daemon refuses to start if group or others can read it, or if it
            belongs to anyone but root or the daemon's user.
            Losing this file makes every enrollment unusable: back it up together with the database.
            """),

        ConfigKey("store", .choice(), \.store, section: "Store: SQLite or a shared PostgreSQL", doc: """
            sqlite keeps accounts in state_directory/twofactor.db, for this host alone. postgresql keeps them
            in the PostgreSQL database named by the postgres_* keys below, which several hosts' daemons can
            share: an enrollment, a spent code or recovery code, a lockout and a learned drift then count on
            every host. Every host must use the same key_file. See docs/POSTGRESQL.md.
            """),
        ConfigKey("postgres_host", databaseHost, \.postgres.host, doc: """
            The database server: a host name or IP address (TLS verifies the certificate against this name),
            or the directory of its Unix socket (an absolute path; then postgres_sslmode must be disable).
            """),
        ConfigKey("postgres_port", .integer(1...65_535), \.postgres.port),
        ConfigKey("postgres_database", sqlName, \.postgres.database),
        ConfigKey("postgres_user", sqlName, \.postgres.user),
        ConfigKey("postgres_password_file", optionalAbsolutePath, \.postgres.passwordFile, doc: """
            File holding the database user's password (one line), or empty for none (client certificate
            authentication). It must be owned by root or the daemon's user and readable by no one else
            (chmod 600). The password itself is never written in this file, in logs or in the audit log.
            """),
        ConfigKey("postgres_sslmode", .choice(), \.postgres.tlsMode, doc: """
            verify-full: TLS, and the server's certificate must chain to postgres_ca_file and name
            postgres_host. verify-ca: TLS, certificate checked, name not. disable: no TLS (only for a
            server on this host, e.g. its Unix socket).
            """),
        ConfigKey("postgres_ca_file", optionalAbsolutePath, \.postgres.caFile, doc: """
            PEM file of the certificate authorities trusted for the server's certificate (empty: the system's).
            """),
        ConfigKey("postgres_cert_file", optionalAbsolutePath, \.postgres.certificateFile, doc: """
            Client certificate and its private key (PEM), for certificate authentication; both or neither.
            """),
        ConfigKey("postgres_key_file", optionalAbsolutePath, \.postgres.privateKeyFile),
        ConfigKey("postgres_timeout", .seconds(0.1...60), \.postgres.timeout, doc: """
            Seconds allowed to connect and to finish one unit of work. Past it the transaction is abandoned
            (the server rolls it back) and the request is answered as a store failure, which pam_twofactor
            treats like an unreachable daemon; keep it below the module's timeout= (3 s by default). While
            the database is unreachable the daemon reconnects by itself, backing off up to 5 s.
            """),

        ConfigKey("admin_group", groupName, \.adminGroup, section: "Who may administer", doc: """
            Members of this group (and root) may manage anyone's enrollment, list, reset and unlock accounts
            and read the clock check. If the group does not exist, only root may.
            """),

        ConfigKey("issuer", issuerName, \.issuer, section: "New enrollments", example: "myhost", doc: """
            Issuer name shown in authenticator apps (default: this host's name).
            """),
        ConfigKey("algorithm", .choice(ignoringCase: true), \.parameters.algorithm, doc: """
            Hash, number of digits and period in seconds of new enrollments. Most authenticator apps only
            support SHA1, 6 digits, 30 seconds. Existing enrollments keep theirs.
            """),
        ConfigKey("digits", .integer(OTPParameters.digitRange), \.parameters.digits),
        ConfigKey("period", .integer(OTPParameters.periodRange), \.parameters.period),

        ConfigKey("window", .integer(0...10), \.window, section: "Verification", doc: """
            Steps (periods) accepted either side of the current one, to allow for clock differences.
            """),
        ConfigKey("drift_learning", .boolean, \.driftLearning, doc: """
            RFC 6238 section 6: remember each account's clock drift (the step offset of its accepted codes)
            and widen the accepted steps by it next time; the window around now is always accepted. The
            learned drift is bounded by drift_max_steps; a recovery-code login and admin unlock clear it.
            """),
        ConfigKey("drift_max_steps", .integer(0...10), \.driftMaxSteps),
        ConfigKey("hotp_look_ahead", .integer(0...100), \.hotpLookAhead, doc: """
            HOTP (counter-based) tokens: counters accepted past the next expected one (RFC 4226 section 7.2),
            for button presses that never reached the server. An account imported with its own window keeps it.
            """),
        ConfigKey("hotp_resync_window", .integer(0...1000), \.hotpResyncWindow, doc: """
            HOTP resynchronisation (RFC 4226 section 7.4): a code up to this many counters ahead, beyond
            hotp_look_ahead, is refused but remembered; the token's next code then resynchronises the account.
            0 turns resynchronisation off.
            """),

        ConfigKey("max_failures", .integer(1...1_000_000), \.maxFailures, section: "Brute-force protection", doc: """
            After max_failures consecutive failures (wrong, reused or malformed codes) the account is locked
            for lockout_seconds; each further lockout without a success in between doubles it, up to
            lockout_max_seconds (not below lockout_seconds). While locked every code is refused without
            being checked. A success resets the count; "twofactor admin unlock USER" clears a lockout.
            """),
        ConfigKey("lockout_seconds", .integer(1...31_536_000), \.lockoutSeconds),
        ConfigKey("lockout_max_seconds", .integer(1...31_536_000), \.lockoutMaxSeconds),

        ConfigKey("ntp_servers", ntpServerList, \.ntpServers, section: "Clock check", doc: """
            TOTP depends on the clock. The daemon asks these NTP servers (space-separated) every
            ntp_interval seconds, ntp_samples queries each, ntp_timeout seconds per query. Empty
            ("ntp_servers =") disables NTP queries.
            """),
        // These ranges are the clock monitor's limits too: it uses the values as they are.
        ConfigKey("ntp_interval", .seconds(1...86_400), \.ntpInterval),
        // Below 50 ms even a nearby server's answer is often missed.
        ConfigKey("ntp_timeout", .seconds(0.05...60), \.ntpTimeout),
        // A server's samples are spread over half the interval, at most 2 s apart (public servers'
        // rate limits): more than 16 would only wait longer for the same answer.
        ConfigKey("ntp_samples", .integer(1...16), \.ntpSamples),
        ConfigKey("clock_warn_threshold", .seconds(0.001...86_400), \.clockWarnThreshold, doc: """
            An offset above this many seconds makes the clock "bad": rejections then carry a hint and the
            audit line a clock_offset= field.
            """),
        ConfigKey("clock_compensation", .boolean, \.clockCompensation, doc: """
            Verify codes against NTP-corrected time, but only when all of these hold: at least
            clock_min_sources servers agree (within about a second) and are a majority of those that
            answered (the others are named as falsetickers and ignored), two consecutive rounds saw the
            same offset, that was less than twice ntp_interval ago, and the kernel does not report an NTP
            daemon (chrony, timesyncd) keeping the clock synchronised. One server alone is only diagnosed.
            """),
        // Never fewer than 2: one server alone must not move verification time.
        ConfigKey("clock_min_sources", .integer(2...16), \.clockMinSources, doc: """
            How many NTP servers must agree before their offset is applied. Each configured name is one
            vote, however many addresses it resolves to.
            """),
        ConfigKey("clock_compensation_max", .seconds(0...31_622_400), \.clockCompensationMax, doc: """
            Largest clock offset (seconds) that compensation corrects: 6 steps of 30 s. NTP answers are not
            authenticated: should forged answers ever win the agreement, this bounds how far they move the
            time codes are checked against. A clock further off is used as it is (and fixing it is the
            remedy `twofactor admin clock` names). See SECURITY.md.
            """),

        ConfigKey("log", .choice(), \.log, section: "Logging", doc: """
            Where audit lines go: syslog (facility authpriv), stderr, or auto (stderr when started by
            systemd with its journal on stderr, i.e. JOURNAL_STREAM is set, else syslog). Under systemd the
            lines go to the journal's native socket with structured fields (TWOFACTOR_EVENT, TWOFACTOR_ACCOUNT,
            TWOFACTOR_RHOST, TWOFACTOR_RULE, TWOFACTOR_RESULT, TWOFACTOR_REASON ...), else to stderr.
            """),
        ConfigKey("audit_format", .choice(), \.auditFormat, doc: """
            How each audit line is written: text ("verify account=alice ... rhost=192.0.2.7 result=rejected
            reason=wrong-code", what contrib/fail2ban matches) or json (one JSON object per line with the
            same keys plus "time" and "event", for log shippers). twofactord(8) lists the keys.
            """),

        ConfigKey("exempt_networks", networkList, \.exemptNetworks, section: "Login policy", doc: """
            Logins from these networks (space-separated CIDRs, IPv4 or IPv6, e.g. "10.0.0.0/8 fd00::/8") are
            not asked for a code. Matched against PAM_RHOST, which must be a literal address: a host name
            or an empty remote host never matches (sshd: keep UseDNS no). The password is still checked:
            an exempt login is answered like an unenrolled one (PAM_IGNORE), never let through alone.
            """),
        ConfigKey("exempt_groups", groupList, \.exemptGroups, doc: """
            Members of these groups (space-separated) are not asked for a code.
            """),
        ConfigKey("require_groups", groupList, \.requireGroups, doc: """
            Members of these groups must use two-factor authentication whatever enforce says, and from
            every network: this outranks exempt_networks and exempt_groups. Unenrolled members are refused.
            """),
        ConfigKey("enforce", .choice(), \.enforce, doc: """
            Whether accounts must enroll: no, yes (every account) or groups (members of enforce_groups).
            Until enforce_from, and for enforce_grace_logins logins after it, an unenrolled account still
            logs in and is told how long it has left and to run `twofactor enable`; then it is refused.
            """),
        ConfigKey("enforce_groups", groupList, \.enforceGroups),
        ConfigKey("enforce_from", dayType, \.enforceFrom, doc: """
            The day (YYYY-MM-DD, from 00:00 UTC) enforcement starts refusing; empty: at once.
            """),
        ConfigKey("enforce_grace_logins", .integer(0...10_000), \.enforceGraceLogins, doc: """
            Logins each unenrolled account still gets once enforcement has started (counted per account).
            """),
        ConfigKey("node_name", nodeNameType, \.nodeName, example: "myhost", doc: """
            This node's name, appended to every audit line as node=NAME (default: this host's name), so
            that the central log of a fleet sharing one database shows where each login happened.
            """),
    ]

    private static let byName = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    public static func named(_ name: String) -> ConfigKey? { byName[name] }

    // MARK: types of their own

    static let octalMode = ConfigType<UInt32>(
        requirement: "an octal permission like 0666", allowed: "octal, 0000 to 0777",
        accept: { UInt32($0, radix: 8).flatMap { $0 <= 0o777 ? $0 : nil } },
        format: { "0" + String($0, radix: 8).leftPadded(to: 3) })

    static let groupName = ConfigType<String>(
        requirement: "a group name", allowed: "a group name",
        accept: { !$0.isEmpty && !$0.contains(where: \.isWhitespace) ? $0 : nil }, format: { $0 })

    static let nodeNameType = ConfigType<String>(
        requirement: "1 to 64 characters from A-Z a-z 0-9 . _ -", allowed: "1 to 64 of A-Z a-z 0-9 . _ -",
        accept: { text in
            let allowed = text.utf8.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
            return !text.isEmpty && text.utf8.count <= 64 && allowed ? text : nil
        }, format: { $0 })

    static let issuerName = ConfigType<String>(
        requirement: "1 to 128 printable characters without ':'", allowed: "1 to 128 characters, no ':'",
        accept: { text in
            guard !text.isEmpty, text.count <= 128, !text.contains(":"),
                  !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
            return text
        }, format: { $0 })

    /// Empty (none) or an absolute path.
    static let optionalAbsolutePath = ConfigType<String>(
        requirement: "empty or an absolute path", allowed: "empty or an absolute path",
        accept: { $0.isEmpty || ($0.hasPrefix("/") && !$0.contains("\0")) ? $0 : nil }, format: { $0 })

    static let databaseHost = ConfigType<String>(
        requirement: "a host name, an IP address or an absolute socket directory",
        allowed: "host, IP address or /socket/directory",
        accept: { text in
            guard !text.isEmpty, text.utf8.count <= 255, !text.contains(where: \.isWhitespace),
                  !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
            return text
        },
        format: { $0 })

    /// A database or role name: 1 to 63 characters, no white space or control characters.
    static let sqlName = ConfigType<String>(
        requirement: "a name of 1 to 63 characters without white space", allowed: "a name",
        accept: { text in
            guard !text.isEmpty, text.utf8.count <= 63, !text.contains(where: \.isWhitespace),
                  !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return nil }
            return text
        }, format: { $0 })

    /// Space-separated NTPServerName entries; empty means none.
    static let ntpServerList = ConfigType<[NTPServerName]>(
        requirement: ntpServerListRequirement, allowed: "host, host:port, [IPv6]:port ...",
        parse: { text throws(ConfigValueError) in
            try text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { entry throws(ConfigValueError) in
                do throws(NTPServerNameError) { return try NTPServerName(parsing: String(entry)) } catch {
                    throw ConfigValueError(requirement: ntpServerListRequirement, got: String(entry), reason: error.message)
                }
            }
        },
        format: { $0.map(\.description).joined(separator: " ") })
    private static let ntpServerListRequirement =
        "host, host:port, IPv6 address or [IPv6 address]:port entries separated by spaces"

    /// Space-separated group names; empty means none.
    static let groupList = ConfigType<[String]>(
        requirement: "group names separated by spaces", allowed: "group names",
        accept: { text in
            let names = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            return names.allSatisfy { !$0.contains(",") && !$0.contains(where: \.isNewline) } ? names : nil
        }, format: { $0.joined(separator: " ") })

    static let networkList = ConfigType<[IPNetwork]>(
        requirement: "IPv4 or IPv6 networks like 192.0.2.0/24 separated by spaces", allowed: "CIDRs",
        parse: { text throws(ConfigValueError) in
            try text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { entry throws(ConfigValueError) in
                guard let network = IPNetwork(parsing: String(entry)) else {
                    throw ConfigValueError(requirement: "IPv4 or IPv6 networks like 192.0.2.0/24 separated by spaces",
                                           got: String(entry))
                }
                return network
            }
        },
        format: { $0.map(\.description).joined(separator: " ") })

    static let dayType = ConfigType<Int64?>(
        requirement: "a day as YYYY-MM-DD, or empty", allowed: "YYYY-MM-DD or empty",
        accept: { text in text.isEmpty ? .some(nil) : LoginPolicy.parseDay(text).map { .some($0) } },
        format: { $0.map(LoginPolicy.day) ?? "" })

    // MARK: the example file

    /// What `twofactord --print-default-config` prints and config/twofactord.conf holds.
    public static func exampleFile() -> String {
        var text = """
            # /etc/twofactor/twofactord.conf: configuration of twofactord(8), the twofactor daemon.
            #
            # Format: one "key = value" per line. Blank lines and lines starting with '#' are ignored; a '#'
            # after white space starts a comment too. Booleans: yes/no, true/false, on/off. Each key at most
            # once. An unknown key or a bad value stops the daemon with exit status 78 and a message naming
            # this file and the line ("twofactord: FILE:LINE: ..."). Check a file with
            #   twofactord --config FILE --check-config
            # Every key line below shows the default and, after it, the values allowed; a missing file means
            # all defaults. `twofactord --print-default-config` prints this file.

            """
        for key in all {
            if let section = key.section {
                let heading = "# --- \(section) "
                text += "\n" + heading + String(repeating: "-", count: max(3, 100 - heading.count)) + "\n"
            } else if !key.doc.isEmpty {
                text += "\n"
            }
            for line in key.doc.split(separator: "\n", omittingEmptySubsequences: false) where !key.doc.isEmpty {
                text += "# \(line)\n"
            }
            let setting = "#\(key.name) = \(key.example ?? key.defaultText)"
            text += setting.padding(toLength: max(setting.count, 40), withPad: " ", startingAt: 0)
                + "  # \(key.allowed)\n"
        }
        return text
    }

    /// What `twofactord --print-config` prints: every key with its value in `config`.
    public static func effectiveConfig(_ config: DaemonConfig) -> String {
        all.map { "\($0.name) = \($0.text(in: config))\n" }.joined()
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
