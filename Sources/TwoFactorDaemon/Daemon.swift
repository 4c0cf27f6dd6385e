// Start-up and shutdown of twofactord: key file, store, clock check, socket (bound or adopted from
// systemd), readiness notification, and a clean stop on SIGTERM/SIGINT.
import Foundation
import Logging
import NIOCore
import NIOPosix

public enum DaemonExit: Error, CustomStringConvertible {
    /// A configuration or environment problem an administrator must fix (exit status 78).
    case configuration(String)
    /// Anything else that prevents starting (exit status 1).
    case failure(String)

    public var description: String {
        switch self {
        case .configuration(let message), .failure(let message): message
        }
    }

    public var status: Int32 {
        switch self {
        case .configuration: 78
        case .failure: 1
        }
    }
}

public final class Daemon: @unchecked Sendable {
    public static let version = "1.0.0"

    let config: DaemonConfig
    let audit: AuditLog
    let logger: Logger

    public init(config: DaemonConfig) {
        self.config = config
        audit = AuditLog(target: config.log)
        let audit = self.audit
        logger = Logger(label: "twofactord") { _ in AuditLogHandler(audit: audit) }
    }

    /// Runs until SIGTERM or SIGINT. Returns the exit status.
    public func run() throws(DaemonExit) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        // Everything the daemon creates is private unless it says otherwise (the socket is chmod'ed).
        umask(0o077)
        let counters = ServerCounters()
        // Stop on SIGTERM/SIGINT: stop accepting first; the rest happens below once the listening
        // channel is closed. Installed before the socket exists so no early signal is lost.
        let stop = StopRequest(counters: counters)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let signalQueue = DispatchQueue(label: "twofactord.signals")
        var sources: [DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler { stop.request(number == SIGTERM ? "SIGTERM" : "SIGINT") }
            source.resume()
            sources.append(source)
        }
        let master: [UInt8]
        do {
            master = try KeyFile.loadOrCreate(path: config.keyFile)
        } catch {
            throw .configuration("key file \(error)")
        }
        let keys = DerivedKeys(master: master)
        try prepareStateDirectory()
        let store: SQLiteAccountStore
        do {
            store = try SQLiteAccountStore(path: config.databasePath)
        } catch {
            throw .failure("database: \(error)")
        }
        let clock = ClockMonitor(configuration: config.clockConfiguration, logger: logger, audit: audit)
        clock.start()
        let processor = RequestProcessor(store: store, rules: AccountRules(policy: AccountPolicy(config: config), keys: keys),
                                         clock: clock, audit: audit)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: min(max(System.coreCount, 1), 4))
        let lookups = NIOThreadPool(numberOfThreads: CallerResolver.lookupThreads)
        lookups.start()
        let resolver = CallerResolver(directory: UserDirectory(adminGroup: config.adminGroup), pool: lookups)
        let bootstrap = ServerFactory.bootstrap(
            group: group, settings: ServerSettings(maxConnections: config.maxConnections, readTimeout: config.readTimeout),
            processor: processor, resolver: resolver, counters: counters)

        let server: Channel
        var createdSocketPath: String?
        var createdSocketIdentity: [Int64]?
        do {
            if let adopted = try Self.adoptedSocket() {
                server = try bootstrap.withBoundSocket(adopted).wait()
            } else {
                try prepareSocketPath()
                // Bound here rather than by NIO, which unlinks the path when the channel closes,
                // even if a newer daemon has put its own socket there since.
                let fd = try Self.listeningSocket(path: config.socket, mode: Int(config.socketMode))
                createdSocketPath = config.socket
                createdSocketIdentity = Self.fileIdentity(config.socket)
                server = try bootstrap.withBoundSocket(fd).wait()
            }
        } catch {
            clock.stop()
            store.close()
            try? lookups.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            if let createdSocketPath { Self.removeSocket(createdSocketPath, ifStill: createdSocketIdentity) }
            if let exit = error as? DaemonExit { throw exit }
            throw .failure("cannot listen on \(config.socket): \(error)")
        }

        // A stop requested while starting takes effect now that there is a channel to close.
        stop.attach(server)
        audit.write("start version=\(Self.version) socket=\(AuditLog.value(createdSocketPath ?? "adopted:\(config.socket)")) database=\(AuditLog.value(config.databasePath)) pid=\(getpid())")
        Self.notifySystemd("READY=1\nSTATUS=Serving on \(createdSocketPath ?? "the socket from systemd")\nMAINPID=\(getpid())")

        try? server.closeFuture.wait()
        counters.beginDraining()

        Self.notifySystemd("STOPPING=1")
        // Finish requests already in flight (bounded, so a wedged store cannot stall the stop).
        let deadline = Date().addingTimeInterval(10)
        while counters.requestsInFlight > 0 && Date() < deadline { usleep(5_000) }
        // Lookups first: the ones still queued then fail on live event loops (answered "busy").
        try? lookups.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
        clock.stop()
        store.close()
        for source in sources { source.cancel() }
        if let createdSocketPath { Self.removeSocket(createdSocketPath, ifStill: createdSocketIdentity) }
        audit.write("stop reason=\(stop.reason ?? "closed")")
        return 0
    }

    private func prepareStateDirectory() throws(DaemonExit) {
        let path = config.stateDirectory
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT else { throw .failure("\(path): \(String(cString: strerror(errno)))") }
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw .failure("cannot create state directory \(path): \(error.localizedDescription)")
            }
            guard stat(path, &info) == 0 else { throw .failure("\(path): \(String(cString: strerror(errno)))") }
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .configuration("state_directory \(path) is not a directory") }
        // Only the daemon reads the database, even though secrets in it are sealed.
        if info.st_mode & 0o077 != 0 {
            guard chmod(path, 0o700) == 0 else {
                throw .failure("cannot make \(path) private (mode 0700): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Creates the socket's directory if missing, and removes a stale socket nobody listens on.
    private func prepareSocketPath() throws {
        let path = config.socket
        let directory = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: directory) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw DaemonExit.failure("\(path) exists and is not a socket; refusing to replace it")
        }
        if Self.someoneListens(on: path) {
            throw DaemonExit.failure("another daemon is already listening on \(path)")
        }
        unlink(path)
    }

    /// A listening Unix socket at `path`, created with its final mode so no client ever finds it
    /// narrower.
    static func listeningSocket(path: String, mode: Int) throws(DaemonExit) -> Int32 {
        guard var address = unixAddress(path) else { throw .failure("socket path too long: \(path)") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failure("socket: \(String(cString: strerror(errno)))") }
        let previousMask = umask(mode_t(~mode & 0o777))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindError = errno
        umask(previousMask)
        guard bound == 0 else {
            close(fd)
            throw .failure("cannot bind \(path): \(String(cString: strerror(bindError)))")
        }
        guard chmod(path, mode_t(mode)) == 0, listen(fd, 256) == 0 else {
            let error = errno
            close(fd)
            unlink(path)
            throw .failure("cannot listen on \(path): \(String(cString: strerror(error)))")
        }
        return fd
    }

    /// Device, inode and change time of `path`, to recognise our own socket file later (an inode
    /// number alone is reused at once when a file is replaced).
    static func fileIdentity(_ path: String) -> [Int64]? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return [Int64(bitPattern: UInt64(info.st_dev)), Int64(bitPattern: UInt64(info.st_ino)),
                Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec)]
    }

    /// Removes the socket file we created, unless it has since been replaced (a newer daemon
    /// listening there must keep its socket).
    static func removeSocket(_ path: String, ifStill identity: [Int64]?) {
        guard let identity, let current = fileIdentity(path), current == identity else { return }
        unlink(path)
    }

    static func someoneListens(on path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard var address = unixAddress(path) else { return false }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    static func unixAddress(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return address
    }

    /// The listening socket passed by systemd (LISTEN_PID/LISTEN_FDS), if any.
    static func adoptedSocket() throws -> Int32? {
        let environment = ProcessInfo.processInfo.environment
        guard let pid = environment["LISTEN_PID"], let count = environment["LISTEN_FDS"], Int32(pid) == getpid() else {
            return nil
        }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        guard count == "1" else {
            throw DaemonExit.configuration("systemd passed \(count) sockets; twofactord expects exactly one (ListenStream=)")
        }
        let fd: Int32 = 3
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.
    static func notifySystemd(_ state: String) {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let offset = abstract ? 1 : 0
        guard bytes.count + offset < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index + offset] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + offset + bytes.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, message.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
    }
}

/// A stop request from a signal, which may arrive before the listening channel exists.
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private let counters: ServerCounters
    private var server: Channel?
    private var stopReason: String?

    init(counters: ServerCounters) { self.counters = counters }

    var reason: String? { lock.lock(); defer { lock.unlock() }; return stopReason }

    func request(_ why: String) {
        lock.lock()
        if stopReason == nil { stopReason = why }
        let channel = server
        lock.unlock()
        counters.beginDraining()
        channel?.close(promise: nil)
    }

    func attach(_ channel: Channel) {
        lock.lock()
        server = channel
        let stopping = stopReason != nil
        lock.unlock()
        if stopping { channel.close(promise: nil) }
    }
}
