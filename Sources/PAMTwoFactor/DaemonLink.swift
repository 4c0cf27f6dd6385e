import CPAMShim

/// Why an exchange with twofactord failed; `errnum` is 0 when no system call failed.
struct LinkFailure: Error {
    /// What the failure says about the daemon; Authentication.unavailable decides from this alone
    /// (and the request it happened on) whether failmode=open may apply.
    enum Kind {
        /// Nothing listens at the socket path: it is missing (ENOENT) or nobody accepts on it
        /// (ECONNREFUSED). The daemon does not exist, so no one can have slowed it down.
        case noDaemon
        /// Everything else: something is there but gave no usable answer (a full backlog, a
        /// timeout, a closed connection, a malformed or unexpected answer, an untrusted peer).
        /// A local user can provoke these, so they never switch the second factor off.
        case unusable
    }

    var kind: Kind
    var what: StaticString
    var errnum: Int32 = 0
    /// Extra context for the log line (never a code).
    var detail: String = ""

    static func unusable(_ what: StaticString, errnum: Int32 = 0, detail: String = "") -> LinkFailure {
        LinkFailure(kind: .unusable, what: what, errnum: errnum, detail: detail)
    }
}

/// One request and its answer over a Unix-socket connection, all within `timeoutSeconds`
/// (connect, write and read share one deadline, so a daemon that accepts and then stalls costs
/// the timeout, not a hang). A login asks `check` and then `verify` on the same connection when
/// the daemon still holds it open (it closes idle ones after its read timeout): one connect and
/// one peer check per login instead of two.
enum DaemonLink {
    /// The module only ever gets short answers; anything bigger is not a sane reply to check or
    /// verify and is treated like garbage.
    static let maxResponseLength = 64 * 1024

    /// `daemonUser` names the only account besides root whose process may answer. `connection`
    /// is the descriptor of an earlier exchange (or -1): it is used again when still open, else
    /// replaced by a new, peer-checked connection. After a failure it is closed and -1.
    static func exchange(socketPath: UnsafeBufferPointer<UInt8>, daemonUser: UnsafePointer<CChar>,
                         frame: UnsafeBufferPointer<UInt8>, timeoutSeconds: Int,
                         connection: inout Int32) throws(LinkFailure) -> WireMessage {
        let deadline = monotonicMillis() + Int64(timeoutSeconds) * 1000
        if connection >= 0 && !isIdleAndOpen(connection) { close(connection); connection = -1 }
        if connection >= 0 {
            do {
                return try requestAndAnswer(connection, frame, deadline)
            } catch {
                // The daemon may have closed the idle connection just as we sent: ask once more on
                // a new one, within the same deadline. Harmless even if the first request was
                // judged: a verify that already used its code is refused as reused, never
                // accepted twice.
                close(connection)
                connection = -1
            }
        }
        connection = try open(socketPath, daemonUser, deadline)
        do {
            return try requestAndAnswer(connection, frame, deadline)
        } catch {
            close(connection)
            connection = -1
            throw error
        }
    }

    /// A new connection whose peer is root or `daemonUser`; nothing is sent before that is known.
    private static func open(_ socketPath: UnsafeBufferPointer<UInt8>, _ daemonUser: UnsafePointer<CChar>,
                             _ deadline: Int64) throws(LinkFailure) -> Int32 {
        let fd = socket(AF_UNIX, Int32(TWOFACTOR_SOCKET_TYPE), 0)
        if fd < 0 { throw .unusable("socket", errnum: errnoValue()) }
        do {
            try connect(fd, socketPath, deadline)
            try checkPeer(fd, daemonUser: daemonUser)
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// True when nothing has arrived on `fd` since its last answer: no hang-up, no stray bytes.
    private static func isIdleAndOpen(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    private static func requestAndAnswer(_ fd: Int32, _ frame: UnsafeBufferPointer<UInt8>,
                                         _ deadline: Int64) throws(LinkFailure) -> WireMessage {
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
            throw .unusable("a malformed answer (bad frame length)")
        }
        var payload = [UInt8](repeating: 0, count: length)
        try payload.withUnsafeMutableBufferPointer { (buffer) throws(LinkFailure) in
            try receiveExactly(fd, buffer.baseAddress!, length, deadline)
        }
        let message: WireMessage
        do {
            message = try WireMessage.decode(payload: payload)
        } catch {
            throw .unusable("a malformed answer (bad fields)")
        }
        if message.version != WireProtocol.version {
            throw .unusable("an answer in another protocol version")
        }
        return message
    }

    private static func connect(_ fd: Int32, _ path: UnsafeBufferPointer<UInt8>, _ deadline: Int64) throws(LinkFailure) {
        var address = sockaddr_un()  // zeroed: the path's NUL is already there
        address.sun_family = sa_family_t(AF_UNIX)
        guard path.count < Int(TWOFACTOR_SUN_PATH_SIZE) else { throw .unusable("socket path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyMemory(from: UnsafeRawBufferPointer(path))
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
                // The listen backlog is full: the daemon exists but is busy (or flooded by
                // someone). Retry briefly until the deadline.
                if monotonicMillis() >= deadline { throw .unusable("connect (daemon busy)", errnum: error) }
                _ = poll(nil, 0, 10)
            case EINPROGRESS:
                try wait(fd, Int16(POLLOUT), deadline, "connect")
                var socketError: Int32 = 0
                var size = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &size) != 0 {
                    throw .unusable("connect", errnum: errnoValue())
                }
                if socketError != 0 { throw connectFailure(socketError) }
                return
            default:
                throw connectFailure(error)
            }
        }
    }

    /// The one rule for what a failed connect says: only a missing socket or one nobody listens
    /// on means there is no daemon.
    private static func connectFailure(_ error: Int32) -> LinkFailure {
        LinkFailure(kind: error == ENOENT || error == ECONNREFUSED ? .noDaemon : .unusable,
                    what: "connect", errnum: error)
    }

    /// Only root or the daemon's user may answer: anyone can listen at a socket path the daemon
    /// left free (stopped, or a socket= in a directory others can write), and an impostor
    /// could accept every code. Checked before anything is sent, so it learns nothing either.
    private static func checkPeer(_ fd: Int32, daemonUser: UnsafePointer<CChar>) throws(LinkFailure) {
        var peerUid: uid_t = 0
        if twofactor_peer_uid(fd, &peerUid) != 0 {
            throw .unusable("reading the peer's credentials (SO_PEERCRED)", errnum: errnoValue())
        }
        if peerUid == 0 { return }
        // Looked up on every authentication (no state kept), and only for a non-root peer.
        let daemonUid = userID(daemonUser)
        if let daemonUid, peerUid == daemonUid { return }
        let user = printable(cStringBytes(daemonUser), limit: 64)
        let trusted = daemonUid.map { "neither root nor daemon_user \(user) (uid \($0))" }
            ?? "not root, and daemon_user \(user) does not exist"
        throw .unusable("an untrusted peer", detail: " (uid \(peerUid): \(trusted))")
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
            throw .unusable("write", errnum: result < 0 ? error : 0)
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
            if result == 0 { throw .unusable("the daemon closing the connection without an answer") }
            let error = errnoValue()
            if error == EINTR { continue }
            if error == EAGAIN {
                try wait(fd, Int16(POLLIN), deadline, "waiting for the answer")
                continue
            }
            throw .unusable("read", errnum: error)
        }
    }

    /// Waits until `fd` is ready for `events` or the deadline passes.
    private static func wait(_ fd: Int32, _ events: Int16, _ deadline: Int64, _ what: StaticString) throws(LinkFailure) {
        while true {
            let remaining = deadline - monotonicMillis()
            if remaining <= 0 { throw .unusable(what, errnum: ETIMEDOUT) }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&descriptor, 1, Int32(remaining))
            if result > 0 { return }  // ready, or an error/hang-up the next call reports
            if result < 0 {
                let error = errnoValue()
                if error == EINTR { continue }
                throw .unusable(what, errnum: error)
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
