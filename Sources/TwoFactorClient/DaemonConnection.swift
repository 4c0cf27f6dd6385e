// A blocking client for twofactord's Unix socket, for the command line and the tests.
// One request at a time; every read and write is bounded by the connection's timeout.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorWire

public enum ClientError: Error, Equatable, CustomStringConvertible {
    /// No socket at the path, or nobody listening on it.
    case daemonNotRunning(path: String)
    case permissionDenied(path: String)
    case timedOut
    case connectionClosed
    case protocolError(String)
    case system(call: String, errno: Int32)

    public var description: String {
        switch self {
        case .daemonNotRunning(let path):
            return "twofactord is not running (no daemon listening on \(path))"
        case .permissionDenied(let path):
            return "permission denied on \(path)"
        case .timedOut:
            return "twofactord did not answer in time"
        case .connectionClosed:
            return "twofactord closed the connection"
        case .protocolError(let what):
            return "protocol error: \(what)"
        case .system(let call, let code):
            return "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}

public final class DaemonConnection {
    public static let defaultSocketPath = Product.defaultSocket

    public let socketPath: String
    private var fd: Int32

    /// Connects to the daemon. `timeoutSeconds` bounds each later read and write.
    public init(socketPath: String = DaemonConnection.defaultSocketPath,
                timeoutSeconds: Double = 10) throws(ClientError) {
        self.socketPath = socketPath
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw ClientError.system(call: "socket", errno: errno) }

        var timeout = timeval(tv_sec: Int(timeoutSeconds),
                              tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            Glibc.close(fd)
            throw ClientError.protocolError("socket path is longer than \(capacity - 1) bytes: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in pathBytes.enumerated() { raw[index] = byte }
            raw[pathBytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result != 0 {
            let code = errno
            Glibc.close(fd)
            switch code {
            case ENOENT, ECONNREFUSED: throw ClientError.daemonNotRunning(path: socketPath)
            case EACCES, EPERM: throw ClientError.permissionDenied(path: socketPath)
            default: throw ClientError.system(call: "connect", errno: code)
            }
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Sends one request and waits for its response.
    public func send(_ request: WireMessage) throws(ClientError) -> WireMessage {
        try writeAll(request.encodedFrame())
        let header = try readExactly(WireProtocol.headerLength)
        let length: Int
        do {
            length = try WireMessage.payloadLength(header: header, limit: WireProtocol.maxResponseLength)
        } catch {
            throw ClientError.protocolError("bad response frame length (\(error))")
        }
        let payload = try readExactly(length)
        do {
            return try WireMessage.decode(payload: payload)
        } catch {
            throw ClientError.protocolError("malformed response (\(error))")
        }
    }

    /// Writes raw bytes: for tests that send malformed frames on purpose.
    public func writeAll(_ bytes: [UInt8]) throws(ClientError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { throw ClientError.timedOut }
                if code == EPIPE || code == ECONNRESET { throw ClientError.connectionClosed }
                throw ClientError.system(call: "send", errno: code)
            }
            offset += written
        }
    }

    /// Reads exactly `count` bytes, or throws `connectionClosed` / `timedOut`.
    public func readExactly(_ count: Int) throws(ClientError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let received = buffer.withUnsafeMutableBytes { raw in
                recv(fd, raw.baseAddress! + offset, count - offset, 0)
            }
            if received == 0 { throw ClientError.connectionClosed }
            if received < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { throw ClientError.timedOut }
                if code == ECONNRESET { throw ClientError.connectionClosed }
                throw ClientError.system(call: "recv", errno: code)
            }
            offset += received
        }
        return buffer
    }
}

extension DaemonConnection {
    /// Opens a connection, sends one request and closes it.
    public static func request(_ message: WireMessage,
                               socketPath: String = DaemonConnection.defaultSocketPath,
                               timeoutSeconds: Double = 10) throws(ClientError) -> WireMessage {
        let connection = try DaemonConnection(socketPath: socketPath, timeoutSeconds: timeoutSeconds)
        defer { connection.close() }
        return try connection.send(message)
    }
}
