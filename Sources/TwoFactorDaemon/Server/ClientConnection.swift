// One client connection on a thread of its own: it reads a request, answers it, and reads the
// next, in order, one at a time, until the client closes, the read timeout passes, a frame is
// malformed or the daemon stops. Nothing a client sends can crash the daemon or hold up others.
import Foundation
import TwoFactorWire

// Requests and answers cross from a connection's thread to the store's threads and back. They are
// values (TwoFactorWire is built without the concurrency checks of this module, for the module).
extension WireMessage: @unchecked Sendable {}
extension WireField: @unchecked Sendable {}
extension Status: @unchecked Sendable {}
extension TwoFactorWire.Operation: @unchecked Sendable {}
extension VerificationMethod: @unchecked Sendable {}

final class ClientConnection: @unchecked Sendable {
    private let fd: Int32
    private let peer: PeerCredentials
    private let settings: ServerSettings
    private let processor: RequestProcessor
    private let directory: UserDirectory
    private let registry: ConnectionRegistry
    private let counters: ServerCounters

    init(fd: Int32, peer: PeerCredentials, settings: ServerSettings, processor: RequestProcessor,
         directory: UserDirectory, registry: ConnectionRegistry, counters: ServerCounters) {
        self.fd = fd
        self.peer = peer
        self.settings = settings
        self.processor = processor
        self.directory = directory
        self.registry = registry
        self.counters = counters
    }

    /// Serves the connection to its end, then closes it and gives its slot back.
    func serve() {
        defer {
            registry.leave(fd)
            close(fd)
            counters.releaseConnection(uid: peer.uid)
        }
        // An answer the client does not read blocks its write at most this long, like a request
        // it does not finish sending.
        SocketTimeout.set(fd, SO_SNDTIMEO, seconds: settings.readTimeout)
        var reader = RequestReader(fd: fd, timeout: settings.readTimeout)
        let reply = Reply()
        while true {
            switch reader.next() {
            case .closed:
                return
            case .protocolError(let problem):
                send(RequestProcessor.answer(.badRequest, message: problem))
                return
            case .frame(let payload):
                let request: WireMessage
                do {
                    request = try WireMessage.decode(payload: payload)
                } catch {
                    send(RequestProcessor.answer(.badRequest, message: "malformed request fields"))
                    return
                }
                // Stopping: close without touching the store; the client retries elsewhere.
                guard registry.startRequest(fd) else { return }
                // Resolved for each request, not once per connection: a connection may outlive
                // the caller's admin-group membership, or the account itself. The NSS lookups may
                // block (LDAP, SSSD), but only this connection's thread; root needs none.
                let caller = directory.caller(uid: peer.uid, gid: peer.gid, pid: peer.pid)
                let answer = reply.wait { respond in processor.handle(request, caller: caller, respond: respond) }
                guard send(answer), registry.finishRequest(fd) else { return }
            }
        }
    }

    /// Writes one answer frame whole; false if the client is gone or stopped reading.
    @discardableResult
    private func send(_ answer: WireMessage) -> Bool {
        var frame = answer.encodedFrame()
        if frame.count - WireProtocol.headerLength > WireProtocol.maxResponseLength {
            frame = RequestProcessor.answer(.internalError, message: "answer too large").encodedFrame()
        }
        return frame.withUnsafeBytes { bytes in
            var sent = 0
            while sent < bytes.count {
                let n = Glibc.send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    sent += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return false
                }
            }
            return true
        }
    }
}

/// Waits on the connection's thread for RequestProcessor's answer, which comes at once (check)
/// or from the store's threads (everything that writes).
private final class Reply: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private var answer: WireMessage?

    func wait(_ start: (@escaping @Sendable (WireMessage) -> Void) -> Void) -> WireMessage {
        start { [self] message in
            answer = message
            ready.signal()
        }
        ready.wait()
        defer { answer = nil }
        return answer!
    }
}

/// Reads request frames from a blocking socket. The client has `timeout` seconds from the moment
/// the daemon waits for a request to deliver all of it: trickling bytes does not extend it.
struct RequestReader {
    enum Event {
        case frame([UInt8])
        /// A length the daemon refuses; nothing after it can be trusted to start a frame.
        case protocolError(String)
        /// End of file, the read timeout, an error, or the daemon stopping.
        case closed
    }

    private let fd: Int32
    private let timeout: Double
    /// One whole frame of the largest size fits, so a frame never needs more room than this.
    private var buffer = [UInt8](repeating: 0, count: WireProtocol.headerLength + WireProtocol.maxRequestLength)
    private var start = 0
    private var end = 0

    init(fd: Int32, timeout: Double) {
        self.fd = fd
        self.timeout = timeout
        SocketTimeout.set(fd, SO_RCVTIMEO, seconds: timeout)
    }

    mutating func next() -> Event {
        var deadline: Double?
        var shortened = false
        defer { if shortened { SocketTimeout.set(fd, SO_RCVTIMEO, seconds: timeout) } }
        while true {
            if let event = buffered() { return event }
            if start > 0 {  // make room after the frames already taken
                buffer.withUnsafeMutableBytes { bytes in
                    _ = memmove(bytes.baseAddress!, bytes.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            }
            // The first read waits the whole timeout (the socket's setting); a partial frame's
            // next reads wait only what is left of it.
            let now = SocketTimeout.monotonicSeconds()
            if let deadline {
                let left = deadline - now
                if left <= 0 { return .closed }
                SocketTimeout.set(fd, SO_RCVTIMEO, seconds: left)
                shortened = true
            } else {
                deadline = now + timeout
            }
            let count = buffer.withUnsafeMutableBytes { bytes in read(fd, bytes.baseAddress! + end, bytes.count - end) }
            if count > 0 {
                end += count
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                return .closed
            }
        }
    }

    /// The next frame already read whole, a bad length, or nil when more bytes are needed.
    private mutating func buffered() -> Event? {
        let header = WireProtocol.headerLength
        guard end - start >= header else { return nil }
        var length = 0
        for index in start..<(start + header) { length = length << 8 | Int(buffer[index]) }
        if length < 2 { return .protocolError("frame length \(length) is too short") }
        if length > WireProtocol.maxRequestLength {
            return .protocolError("frame length \(length) exceeds the limit of \(WireProtocol.maxRequestLength) bytes")
        }
        guard end - start >= header + length else { return nil }
        let payload = Array(buffer[(start + header)..<(start + header + length)])
        start += header + length
        if start == end { start = 0; end = 0 }
        return .frame(payload)
    }
}

enum SocketTimeout {
    /// SO_RCVTIMEO or SO_SNDTIMEO: a blocked read or write on `fd` gives up after `seconds`.
    static func set(_ fd: Int32, _ option: Int32, seconds: Double) {
        let whole = max(0, seconds)
        var value = timeval(tv_sec: Int(whole), tv_usec: Int((whole - whole.rounded(.down)) * 1_000_000))
        if value.tv_sec == 0 && value.tv_usec == 0 { value.tv_usec = 1 }  // zero would mean "never"
        setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
