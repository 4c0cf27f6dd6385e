// Start-up and shutdown of twofactord, in order: key file, store, clock check, socket (bound or
// adopted from systemd), readiness notification, and a clean stop on SIGTERM/SIGINT.
import Foundation
import Logging
import NIOCore
import NIOExtras
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
        audit = AuditLog(target: config.log, format: config.auditFormat, node: config.nodeName)
        let audit = self.audit
        logger = Logger(label: "twofactord") { _ in AuditLogHandler(audit: audit) }
    }

    /// Runs until SIGTERM or SIGINT. Returns the exit status. The steps have files of their own:
    /// Lifecycle/GracefulShutdown.swift (signals, drain), Lifecycle/SocketFile.swift (the socket
    /// the daemon binds), Lifecycle/Systemd.swift (socket activation, readiness).
    public func run() throws(DaemonExit) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        // Everything the daemon creates is private unless it says otherwise (the socket is chmod'ed).
        umask(0o077)
        let counters = ServerCounters()
        let shutdown = GracefulShutdown(counters: counters)
        // Before anything else, so that a stop sent while starting is not lost: it takes effect
        // once the server listens.
        let signals = StopSignals.trap { shutdown.request($0) }
        defer { signals.cancel() }
        let keys: KeySource
        do {
            keys = try KeySource(path: config.keyFile)
        } catch {
            throw .configuration("key file \(error)")
        }
        let location = StoreLocation.configured(config)
        if case .sqlite = location { try prepareStateDirectory() }
        let store: MonitoredStore
        do {
            store = MonitoredStore(try location.open(mustExist: false), location: location)
        } catch {
            throw .failure(config.store == .sqlite ? "database: \(error)" : "database \(config.storeName): \(error)")
        }
        let clock = ClockMonitor(configuration: config.clockConfiguration, logger: logger, audit: audit)
        clock.start()
        let processor = RequestProcessor(store: store, rules: AccountRules(policy: AccountPolicy(config: config), keySource: keys),
                                         clock: clock, audit: audit, loginPolicy: LoginPolicy(config: config),
                                         node: config.nodeName)
        // One event loop for the listening socket and every connection. The loop only frames
        // and routes requests (the store and the NSS lookups run elsewhere), so one is plenty;
        // and with the accepting and the accepted channel on one loop, NIO's accept path never
        // hops between loops, so no hop can still be pending when the loop stops. With several
        // loops, a connection accepted as the daemon stopped made NIO log "Cannot schedule tasks
        // on an EventLoop that has already shut down".
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let lookups = NIOThreadPool(numberOfThreads: CallerResolver.lookupThreads)
        lookups.start()
        let resolver = CallerResolver(directory: UserDirectory(adminGroup: config.adminGroup), pool: lookups)

        let server: Channel
        let socketFile: SocketFile?
        do {
            (server, socketFile) = try listen(group: group, processor: processor, resolver: resolver, counters: counters,
                                              shutdown: shutdown)
        } catch {
            clock.stop()
            store.close()
            try? lookups.syncShutdownGracefully()
            try? group.syncShutdownGracefully()
            throw error
        }

        audit.start(version: Self.version, socket: socketFile?.path ?? "adopted:\(config.socket)",
                    database: config.storeName, pid: getpid())
        Systemd.notify("READY=1\nSTATUS=Serving on \(socketFile?.path ?? "the socket from systemd")\nMAINPID=\(getpid())")

        try? server.closeFuture.wait()
        Systemd.notify("STOPPING=1")
        shutdown.waitUntilDrained()
        // Lookups first (any left after the drain timeout): the ones still queued then fail on a
        // live event loop and are answered "busy".
        try? lookups.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
        clock.stop()
        store.close()
        socketFile?.removeIfStillOurs()
        audit.stop(reason: shutdown.reason)
        return 0
    }

    /// Listens on the socket from systemd, or else on a socket file of our own. The bootstrap and
    /// the quiescing helper live only in here, so that nothing but `shutdown` holds the helper
    /// once the server is up (see GracefulShutdown.waitUntilDrained).
    private func listen(group: EventLoopGroup, processor: RequestProcessor, resolver: CallerResolver,
                        counters: ServerCounters, shutdown: GracefulShutdown) throws(DaemonExit) -> (Channel, SocketFile?) {
        let quiescing = ServerQuiescingHelper(group: group)
        let bootstrap = ServerFactory.bootstrap(
            group: group, settings: ServerSettings(maxConnections: config.maxConnections, readTimeout: config.readTimeout),
            processor: processor, resolver: resolver, counters: counters, quiescing: quiescing)
        var socketFile: SocketFile?
        do {
            let server: Channel
            if let adopted = try Systemd.adoptedSocket() {
                server = try bootstrap.withBoundSocket(adopted).wait()
            } else {
                let fd: Int32
                (socketFile, fd) = try SocketFile.bind(path: config.socket, mode: Int(config.socketMode))
                server = try bootstrap.withBoundSocket(fd).wait()
            }
            shutdown.attach(quiescing, server: server)
            return (server, socketFile)
        } catch {
            socketFile?.removeIfStillOurs()
            if let exit = error as? DaemonExit { throw exit }
            throw .failure("cannot listen on \(config.socket): \(error)")
        }
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
        // A directory others could write may hold a database they planted (and can still change).
        if let problem = TrustedFile.problem(info, forbidden: 0o022, access: "writable", remedy: "700") {
            throw .configuration("state_directory \(path) \(problem)")
        }
        // Only the daemon reads the database, even though secrets in it are sealed.
        if info.st_mode & 0o077 != 0 {
            guard chmod(path, 0o700) == 0 else {
                throw .failure("cannot make \(path) private (mode 0700): \(String(cString: strerror(errno)))")
            }
        }
    }
}
