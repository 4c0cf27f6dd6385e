// Start-up and shutdown of twofactord, in order: key file, store, clock check, socket (bound or
// adopted from systemd), readiness notification, and a clean stop on SIGTERM/SIGINT.
import Foundation
import Logging

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
        let shutdown = GracefulShutdown()
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
        let server: SocketServer
        let socketFile: SocketFile?
        do {
            (server, socketFile) = try listen(processor: processor)
        } catch {
            clock.stop()
            store.close()
            throw error
        }
        shutdown.attach(server)

        audit.start(version: Self.version, socket: socketFile?.path ?? "adopted:\(config.socket)",
                    database: config.storeName, pid: getpid())
        Systemd.notify("READY=1\nSTATUS=Serving on \(socketFile?.path ?? "the socket from systemd")\nMAINPID=\(getpid())")

        do {
            try server.run()
        } catch {
            Systemd.notify("STOPPING=1")
            clock.stop()
            store.close()
            socketFile?.removeIfStillOurs()
            throw error
        }
        Systemd.notify("STOPPING=1")
        shutdown.waitUntilDrained()
        clock.stop()
        store.close()
        socketFile?.removeIfStillOurs()
        audit.stop(reason: shutdown.reason)
        return 0
    }

    /// The server on the socket from systemd, or else on a socket file of our own.
    private func listen(processor: RequestProcessor) throws(DaemonExit) -> (SocketServer, SocketFile?) {
        let settings = ServerSettings(maxConnections: config.maxConnections, readTimeout: config.readTimeout)
        let directory = UserDirectory(adminGroup: config.adminGroup)
        if let adopted = try Systemd.adoptedSocket() {
            return (try SocketServer(listener: adopted, settings: settings, processor: processor, directory: directory), nil)
        }
        let (socketFile, fd) = try SocketFile.bind(path: config.socket, mode: Int(config.socketMode))
        do {
            return (try SocketServer(listener: fd, settings: settings, processor: processor, directory: directory), socketFile)
        } catch {
            close(fd)
            socketFile.removeIfStillOurs()
            throw error
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
