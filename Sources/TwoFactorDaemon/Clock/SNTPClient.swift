// A blocking SNTP client on plain POSIX UDP sockets. It only ever runs on the clock monitor's own
// thread, so nothing it does (name resolution included) can hold up a login.
import Glibc

/// A configured server: "host", "host:port", "[v6addr]:port" or a bare IPv6 address.
public struct NTPServerName: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public static let defaultPort: UInt16 = 123

    public init(host: String, port: UInt16 = NTPServerName.defaultPort) {
        self.host = host
        self.port = port
    }

    /// Parses an entry of ntp_servers (the only parser of server names: ConfigKeys uses it, and
    /// the monitor gets the parsed names). Throws why an entry is refused.
    public init(parsing entry: String) throws(NTPServerNameError) {
        guard !entry.isEmpty else { throw NTPServerNameError("empty name") }
        guard entry.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw NTPServerNameError("spaces or non-ASCII characters")
        }
        var host = entry
        var portText: Substring?
        var bracketed = false
        if entry.hasPrefix("[") {
            guard let close = entry.firstIndex(of: "]") else { throw NTPServerNameError("missing ]") }
            host = String(entry[entry.index(after: entry.startIndex)..<close])
            bracketed = true
            let rest = entry[entry.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw NTPServerNameError("expected :port after ]") }
                portText = rest.dropFirst()
            }
        } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
            host = String(entry[..<colon])
            portText = entry[entry.index(after: colon)...]
        } // more than one colon without brackets: a bare IPv6 address
        if bracketed || host.contains(":") {
            guard Self.isIPv6Address(host) else { throw NTPServerNameError("not an IPv6 address") }
        } else {
            guard !host.isEmpty, host.count <= 253,
                  host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" }) else {
                throw NTPServerNameError("bad host name")
            }
        }
        var port = Self.defaultPort
        if let portText {
            guard let value = UInt16(portText), value > 0 else { throw NTPServerNameError("port must be 1 to 65535") }
            port = value
        }
        self.init(host: host, port: port)
    }

    /// A numeric IPv6 address, optionally with a zone ("fe80::1%eth0").
    static func isIPv6Address(_ text: String) -> Bool {
        let parts = text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }) else {
                return false
            }
        }
        var address = in6_addr()
        return inet_pton(AF_INET6, String(parts[0]), &address) == 1
    }

    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return port == Self.defaultPort ? shownHost : "\(shownHost):\(port)"
    }
}

public struct NTPServerNameError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One resolved address of a server.
struct NTPSocketAddress: @unchecked Sendable, CustomStringConvertible {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    var family: Int32 { Int32(storage.ss_family) }

    /// Same family, address and port (what a genuine answer must come from).
    func sameEndpoint(as other: NTPSocketAddress) -> Bool {
        guard family == other.family else { return false }
        var a = self, b = other
        switch family {
        case AF_INET:
            return withUnsafeBytes(of: &a.storage) { ra in
                withUnsafeBytes(of: &b.storage) { rb in
                    let x = ra.load(as: sockaddr_in.self), y = rb.load(as: sockaddr_in.self)
                    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr
                }
            }
        case AF_INET6:
            return withUnsafeBytes(of: &a.storage) { ra in
                withUnsafeBytes(of: &b.storage) { rb in
                    let x = ra.load(as: sockaddr_in6.self), y = rb.load(as: sockaddr_in6.self)
                    return x.sin6_port == y.sin6_port
                        && withUnsafeBytes(of: x.sin6_addr) { Array($0) } == withUnsafeBytes(of: y.sin6_addr) { Array($0) }
                }
            }
        default:
            return false
        }
    }

    var description: String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        var copy = storage
        let rc = withUnsafePointer(to: &copy) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                            NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard rc == 0 else { return "?" }
        let h = String(decoding: host.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let s = String(decoding: service.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return family == AF_INET6 ? "[\(h)]:\(s)" : "\(h):\(s)"
    }
}

enum SNTPQueryError: Error, Equatable, CustomStringConvertible {
    case resolution(String)
    case socket(String)
    case noAnswer(timeout: Double)
    case rejected(NTPRejection)

    var description: String {
        switch self {
        case .resolution(let why): return "cannot resolve: \(why)"
        case .socket(let why): return why
        case .noAnswer(let timeout): return "no answer within \(formatSeconds(timeout))"
        case .rejected(let why): return why.description
        }
    }
}

/// One accepted measurement, with the local clocks at the moment the answer arrived.
struct NTPSample: Sendable, Equatable {
    var exchange: NTPExchange
    var server: String
    /// CLOCK_REALTIME (Unix seconds) and CLOCK_BOOTTIME at T4.
    var localTime: Double
    var bootTime: Double
}

struct SNTPClient {
    var timeout: Double
    /// Polled while waiting, so stop() does not have to wait out a whole timeout.
    var isCancelled: @Sendable () -> Bool = { false }

    /// IPv4 and IPv6 addresses of a server (getaddrinfo). AI_ADDRCONFIG skips the families this
    /// host cannot reach; it is dropped on a second try because it also hides "::1" on hosts with
    /// IPv6 only on the loopback interface.
    static func resolve(_ server: NTPServerName) -> Result<[NTPSocketAddress], SNTPQueryError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_UDP)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        var rc = getaddrinfo(server.host, String(server.port), &hints, &list)
        if rc != 0, rc != EAI_NONAME, rc != EAI_AGAIN {
            hints.ai_flags = 0
            rc = getaddrinfo(server.host, String(server.port), &hints, &list)
        }
        guard rc == 0 else { return .failure(.resolution(String(cString: gai_strerror(rc)))) }
        defer { freeaddrinfo(list) }
        var addresses: [NTPSocketAddress] = []
        var node = list
        while let entry = node?.pointee {
            if let sa = entry.ai_addr, (entry.ai_family == AF_INET || entry.ai_family == AF_INET6),
               Int(entry.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size {
                var address = NTPSocketAddress()
                withUnsafeMutableBytes(of: &address.storage) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(entry.ai_addrlen)))
                }
                address.length = entry.ai_addrlen
                if !addresses.contains(where: { $0.sameEndpoint(as: address) }) { addresses.append(address) }
            }
            node = entry.ai_next
        }
        return addresses.isEmpty ? .failure(.resolution("no IPv4/IPv6 address")) : .success(addresses)
    }

    /// Sends one request and waits for a valid answer from `address` until the timeout.
    func query(_ address: NTPSocketAddress, serverLabel: String) -> Result<NTPSample, SNTPQueryError> {
        let fd = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_UDP))
        guard fd >= 0 else { return .failure(.socket("socket: \(errnoText())")) }
        defer { close(fd) }
        // A connected socket with a fresh ephemeral port: the kernel drops datagrams from any
        // other address, and a spoofer has to guess the port as well as the timestamp.
        var target = address
        let connected = withUnsafePointer(to: &target.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.length) }
        }
        guard connected == 0 else { return .failure(.socket("connect \(address): \(errnoText())")) }

        let now = SystemClock.realtime()
        let t1 = NTPTimestamp(unixSeconds: now.seconds, nanoseconds: now.nanoseconds)
        // The server echoes this value; random low 32 bits make it unguessable. T1 itself stays here.
        var random = SystemRandomNumberGenerator()
        var sentTransmit = NTPTimestamp(seconds: t1.seconds, fraction: random.next())
        if sentTransmit.isZero { sentTransmit.raw = 1 }
        let request = NTPPacket.clientRequest(transmit: sentTransmit).encoded()
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == request.count else { return .failure(.socket("send to \(address): \(errnoText())")) }

        let deadline = SystemClock.bootSeconds() + timeout
        var lastRejection: NTPRejection?
        var buffer = [UInt8](repeating: 0, count: 1024)
        while true {
            if isCancelled() { return .failure(.noAnswer(timeout: timeout)) }
            let remaining = deadline - SystemClock.bootSeconds()
            if remaining <= 0 {
                return .failure(lastRejection.map { .rejected($0) } ?? .noAnswer(timeout: timeout))
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(remaining, 0.1) * 1000) + 1)
            if ready < 0 {
                if errno == EINTR { continue }
                return .failure(.socket("poll: \(errnoText())"))
            }
            if ready == 0 { continue }
            var from = NTPSocketAddress()
            from.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { buf in
                withUnsafeMutablePointer(to: &from.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, buf.baseAddress, buf.count, 0, $0, &from.length)
                    }
                }
            }
            let arrived = SystemClock.realtime()
            let arrivedBoot = SystemClock.bootSeconds()
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                // ECONNREFUSED: an ICMP port unreachable came back, nothing listens there.
                return .failure(.socket("receive from \(address): \(errnoText())"))
            }
            guard from.sameEndpoint(as: address) else {
                lastRejection = .wrongSource(from.description)
                continue
            }
            let t4 = NTPTimestamp(unixSeconds: arrived.seconds, nanoseconds: arrived.nanoseconds)
            switch SNTP.evaluate(reply: buffer[0..<count], sentTransmit: sentTransmit, t1: t1, t4: t4) {
            case .success(let exchange):
                let local = Double(arrived.seconds) + Double(arrived.nanoseconds) / 1e9
                return .success(NTPSample(exchange: exchange, server: serverLabel, localTime: local,
                                          bootTime: arrivedBoot))
            case .failure(.wrongOrigin):
                // Not the answer to this request (late duplicate or forgery): keep waiting for it.
                lastRejection = .wrongOrigin
            case .failure(let rejection):
                return .failure(.rejected(rejection))
            }
        }
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
