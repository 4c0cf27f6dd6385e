import CPAMShim

/// Why an exchange with twofactord failed; `errnum` is 0 when no system call failed.
struct LinkFailure: Error {
    var what: StaticString
    var errnum: Int32 = 0
    /// Something answered, but not usably. failmode=open never lets such a login through: a
    /// daemon that answers is reachable, and an answer (busy, say) may be provoked by anyone.
    var answered = false
}

/// One request and its answer over a fresh Unix-socket connection, all within `timeoutSeconds`
/// (connect, write and read share one deadline, so a daemon that accepts and then stalls costs
/// the timeout, not a hang).
enum DaemonLink {
    /// The module only ever gets short answers; anything bigger is not a sane reply to check or
    /// verify and is treated like garbage.
    static let maxResponseLength = 64 * 1024

    static func exchange(socketPath: UnsafePointer<CChar>, socketPathLength: Int,
                         frame: UnsafeBufferPointer<UInt8>, timeoutSeconds: Int) throws(LinkFailure) -> WireMessage {
        let deadline = monotonicMillis() + Int64(timeoutSeconds) * 1000
        let fd = socket(AF_UNIX, Int32(TWOFACTOR_SOCKET_TYPE), 0)
        if fd < 0 { throw LinkFailure(what: "socket", errnum: errnoValue()) }
        defer { close(fd) }

        try connect(fd, socketPath, socketPathLength, deadline)
        try sendAll(fd, frame, deadline)

        var header: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        try withUnsafeMutableBytes(of: &header) { (raw) throws(LinkFailure) in
            try receiveExactly(fd, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), 4, deadline)
        }
        let length: Int
        do {
            length = try WireMessage.payloadLength(header: [header.0, header.1, header.2, header.3],
                                                   limit: maxResponseLength)
        } catch {
            throw LinkFailure(what: "a malformed answer (bad frame length)", answered: true)
        }
        var payload = [UInt8](repeating: 0, count: length)
        try payload.withUnsafeMutableBufferPointer { (buffer) throws(LinkFailure) in
            try receiveExactly(fd, buffer.baseAddress!, length, deadline)
        }
        let message: WireMessage
        do {
            message = try WireMessage.decode(payload: payload)
        } catch {
            throw LinkFailure(what: "a malformed answer (bad fields)", answered: true)
        }
        if message.version != WireProtocol.version {
            throw LinkFailure(what: "an answer in another protocol version", answered: true)
        }
        return message
    }

    private static func connect(_ fd: Int32, _ path: UnsafePointer<CChar>, _ pathLength: Int,
                                _ deadline: Int64) throws(LinkFailure) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        guard pathLength < Int(TWOFACTOR_SUN_PATH_SIZE) else { throw LinkFailure(what: "socket path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyMemory(from: UnsafeRawBufferPointer(start: path, count: pathLength))
        }
        while true {
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    CPAMShim.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result == 0 { return }
            let error = errnoValue()
            switch error {
            case EINTR:
                continue
            case EAGAIN:
                // The listen backlog is full: the daemon is busy. Retry briefly until the deadline.
                if monotonicMillis() >= deadline { throw LinkFailure(what: "connect (daemon busy)", errnum: error) }
                _ = poll(nil, 0, 10)
            case EINPROGRESS:
                try wait(fd, Int16(POLLOUT), deadline, "connect")
                var socketError: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &size) != 0 {
                    throw LinkFailure(what: "connect", errnum: errnoValue())
                }
                if socketError != 0 { throw LinkFailure(what: "connect", errnum: socketError) }
                return
            default:
                throw LinkFailure(what: "connect", errnum: error)
            }
        }
    }

    private static func sendAll(_ fd: Int32, _ bytes: UnsafeBufferPointer<UInt8>, _ deadline: Int64) throws(LinkFailure) {
        var sent = 0
        while sent < bytes.count {
            let result = send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(TWOFACTOR_SEND_FLAGS))
            if result > 0 {
                sent += result
                continue
            }
            let error = errnoValue()
            if result < 0 && error == EINTR { continue }
            if result < 0 && error == EAGAIN {
                try wait(fd, Int16(POLLOUT), deadline, "write")
                continue
            }
            throw LinkFailure(what: "write", errnum: result < 0 ? error : 0)
        }
    }

    private static func receiveExactly(_ fd: Int32, _ into: UnsafeMutablePointer<UInt8>, _ count: Int,
                                       _ deadline: Int64) throws(LinkFailure) {
        var received = 0
        while received < count {
            let result = recv(fd, into + received, count - received, 0)
            if result > 0 {
                received += result
                continue
            }
            if result == 0 { throw LinkFailure(what: "the daemon closing the connection without an answer") }
            let error = errnoValue()
            if error == EINTR { continue }
            if error == EAGAIN {
                try wait(fd, Int16(POLLIN), deadline, "waiting for the answer")
                continue
            }
            throw LinkFailure(what: "read", errnum: error)
        }
    }

    /// Waits until `fd` is ready for `events` or the deadline passes.
    private static func wait(_ fd: Int32, _ events: Int16, _ deadline: Int64, _ what: StaticString) throws(LinkFailure) {
        while true {
            let remaining = deadline - monotonicMillis()
            if remaining <= 0 { throw LinkFailure(what: what, errnum: ETIMEDOUT) }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&descriptor, 1, Int32(remaining))
            if result > 0 { return }  // ready, or an error/hang-up the next call reports
            if result < 0 {
                let error = errnoValue()
                if error == EINTR { continue }
                throw LinkFailure(what: what, errnum: error)
            }
        }
    }

    static func monotonicMillis() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

func errnoValue() -> Int32 { __errno_location().pointee }
