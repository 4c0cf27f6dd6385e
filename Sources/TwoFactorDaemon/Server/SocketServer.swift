// The socket side: a pool of threads that each accept a connection and serve it themselves
// (ClientConnection.swift), connections over the limits told `busy`, and a stop that closes the
// listening socket and drains the connections (ConnectionRegistry.swift).
//
// Why threads that accept for themselves rather than an event loop (SwiftNIO until issue 13): a
// login is one short connection. NIO's set-up and close of a channel were about two thirds of the
// daemon's CPU per login, and its one event loop answered every `check` on one core. Handing each
// accepted connection to a new thread would add a thread's creation and a wake-up of another CPU
// to every login (docs/PERFORMANCE-NOTES.md measured it). Here the thread that the kernel wakes for a new
// connection (EPOLLEXCLUSIVE: one, not all) accepts it, reads the request and answers it with
// plain system calls; `check`s run on every core; a slow NSS lookup blocks only the connection
// that needs it. The connection limits (ServerCounters) bound the threads.
import CTwoFactorSystem
import Foundation
import TwoFactorWire

final class SocketServer: @unchecked Sendable {
    /// Threads kept waiting to accept beside those serving, so a burst of logins does not wait
    /// for a thread to be created.
    static let spareThreads = 2
    /// Idle threads beyond this end once their connection closes.
    static let maxIdleThreads = 8
    /// Each thread's stack: the request path is shallow (no recursion; SQLite's own use is a few
    /// KiB), and most of it is never touched.
    static let threadStackBytes = 512 * 1024
    /// A `busy` answer gets this long to be read before its connection is closed.
    static let busyLinger = 1.0

    private let listener: Int32
    private let settings: ServerSettings
    private let processor: RequestProcessor
    private let directory: UserDirectory
    private let counters = ServerCounters()
    private let registry = ConnectionRegistry()
    /// Written by `stop`, and never read: it stays readable, so every waiting thread wakes.
    private let stopPipe: (read: Int32, write: Int32)
    /// Written when a connection is turned away, to wake the thread that closes it later.
    private let turnedAwayPipe: (read: Int32, write: Int32)

    // Guarded by `pool`.
    private let pool = NSCondition()
    /// Threads waiting to accept (or accepting) a connection.
    private var waiting = 0
    private var stopping = false
    private var turnedAway: [(fd: Int32, until: Double)] = []

    /// `listener` is a listening Unix socket (bound here or adopted from systemd); the server
    /// owns it from now on.
    init(listener: Int32, settings: ServerSettings, processor: RequestProcessor, directory: UserDirectory) throws(DaemonExit) {
        let flags = fcntl(listener, F_GETFL)
        guard flags >= 0, fcntl(listener, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw .failure("cannot make the listening socket non-blocking: \(String(cString: strerror(errno)))")
        }
        stopPipe = try Self.makePipe()
        do {
            turnedAwayPipe = try Self.makePipe()
        } catch {
            close(stopPipe.read); close(stopPipe.write)
            throw error
        }
        self.listener = listener
        self.settings = settings
        self.processor = processor
        self.directory = directory
    }

    // The pipes live as long as the server: `stop` may still be called after `run` ended.
    deinit {
        for fd in [stopPipe.read, stopPipe.write, turnedAwayPipe.read, turnedAwayPipe.write] { close(fd) }
    }

    /// Stops accepting and tells every connection to finish: from any thread, at any time (also
    /// before `run`, which then returns at once).
    func stop() {
        pool.lock()
        stopping = true
        pool.unlock()
        registry.beginDraining()
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)
    }

    /// Serves until `stop` or until the listening socket fails. The calling thread closes turned-
    /// away connections meanwhile. When it returns the listening socket is closed, so later
    /// clients are refused rather than left waiting; connections may still be finishing
    /// (`waitUntilDrained`).
    func run() throws(DaemonExit) {
        for _ in 0..<Self.spareThreads {
            let problem = startAcceptingThread()
            if problem == ESHUTDOWN { break }  // stopped while starting
            guard problem == 0 else {
                stop()
                waitUntilNoneAccepts()
                close(listener)
                throw .failure("cannot start a thread to accept connections: \(String(cString: strerror(problem)))")
            }
        }
        closeTurnedAwayUntilStopped()
        waitUntilNoneAccepts()
        close(listener)
    }

    /// Waits (bounded) until every connection has finished after `stop`.
    func waitUntilDrained(timeout: Double) -> Bool { registry.waitUntilEmpty(timeout: timeout) }

    // MARK: Accepting

    /// Counts the new thread as waiting before it starts, so `run` cannot miss it, and starts none
    /// once the server stops (the listening socket may be closed already). 0, ESHUTDOWN when
    /// stopping, or pthread_create's error.
    private func startAcceptingThread() -> Int32 {
        pool.lock()
        guard !stopping else { pool.unlock(); return ESHUTDOWN }
        waiting += 1
        pool.unlock()
        let problem = DetachedThread.start(stackBytes: Self.threadStackBytes) { [self] in acceptAndServe() }
        if problem != 0 { leaveWaiting() }
        return problem
    }

    /// One pool thread: accepts a connection, serves it to its end, and accepts the next.
    private func acceptAndServe() {
        // Its own epoll instance. Short of descriptors (EMFILE), it tries again rather than give
        // up: were every waiting thread to give up, none would accept until a connection being
        // served ended (up to read_timeout, or never while an attacker keeps them busy).
        var waiter = twofactor_accept_waiter(listener, stopPipe.read)
        while waiter < 0 {
            if isStopping {
                leaveWaiting()
                return
            }
            usleep(10_000)
            waiter = twofactor_accept_waiter(listener, stopPipe.read)
        }
        defer { close(waiter) }
        while true {
            guard let fd = nextConnection(waiter) else {
                leaveWaiting()
                return
            }
            // This thread serves now: keep enough others waiting for the next logins.
            pool.lock()
            waiting -= 1
            let replace = !stopping && waiting < Self.spareThreads
            if waiting == 0 { pool.broadcast() }
            pool.unlock()
            if replace { _ = startAcceptingThread() }  // failing that, the next waits for a free thread

            admit(fd)

            pool.lock()
            let again = !stopping && waiting < Self.maxIdleThreads
            if again { waiting += 1 }
            pool.unlock()
            if !again { return }
        }
    }

    private var isStopping: Bool {
        pool.lock(); defer { pool.unlock() }
        return stopping
    }

    /// The next accepted connection, or nil when the server stops.
    private func nextConnection(_ waiter: Int32) -> Int32? {
        while true {
            if isStopping { return nil }
            // Try first: one may be queued already, and the kernel wakes a waiter only for new ones.
            let fd = twofactor_accept_cloexec(listener)
            if fd >= 0 { return fd }
            switch errno {
            case EINTR, ECONNABORTED:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: the connection stays in the backlog; pause rather
                // than spin on a socket that stays readable.
                usleep(10_000)
                continue
            default:  // EAGAIN: nothing queued, so wait
                break
            }
            switch twofactor_accept_wait(waiter, listener) {
            case 1: continue
            case 0: return nil  // stop
            default:
                stop()  // the listening socket failed: the daemon stops (twofactord logs "closed")
                return nil
            }
        }
    }

    private func leaveWaiting() {
        pool.lock()
        waiting -= 1
        if waiting == 0 { pool.broadcast() }
        pool.unlock()
    }

    /// After a stop: once no thread can call accept any more, the listening socket can close.
    private func waitUntilNoneAccepts() {
        pool.lock()
        while waiting > 0 { pool.wait() }
        pool.unlock()
    }

    /// Serves `fd` on this thread, or tells it `busy`.
    private func admit(_ fd: Int32) {
        var peer = PeerCredentials()
        guard twofactor_peer_credentials(fd, &peer.pid, &peer.uid, &peer.gid) == 0 else {
            close(fd)
            return
        }
        guard counters.acquireConnection(uid: peer.uid, limits: settings) else {
            turnAway(fd)
            return
        }
        guard registry.admit(fd) else {  // accepted just as the stop began
            close(fd)
            counters.releaseConnection(uid: peer.uid)
            return
        }
        ClientConnection(fd: fd, peer: peer, settings: settings, processor: processor, directory: directory,
                         registry: registry, counters: counters).serve()
    }

    // MARK: Turned away

    /// Over the limits: say `busy` (it fits the socket's buffer, so this never blocks) and leave
    /// the connection open a moment for the client to read it.
    private func turnAway(_ fd: Int32) {
        guard counters.acquireTurnedAway(limit: settings.turnedAwayConnections) else {
            close(fd)  // a flood: no answer at all
            return
        }
        let busy = RequestProcessor.answer(.busy, message: "twofactord is serving too many connections; try again")
        let frame = busy.encodedFrame()
        _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        pool.lock()
        turnedAway.append((fd, SocketTimeout.monotonicSeconds() + Self.busyLinger))
        pool.unlock()
        var byte: UInt8 = 1
        _ = write(turnedAwayPipe.write, &byte, 1)
    }

    /// Closes each turned-away connection when its moment is up, and all of them at the stop.
    private func closeTurnedAwayUntilStopped() {
        var scratch = [UInt8](repeating: 0, count: 256)
        while true {
            pool.lock()
            let now = SocketTimeout.monotonicSeconds()
            var expired: [Int32] = []
            while let first = turnedAway.first, first.until <= now || stopping {
                expired.append(first.fd)
                turnedAway.removeFirst()
            }
            let next = turnedAway.first?.until
            let stopped = stopping
            pool.unlock()
            for fd in expired { closeTurnedAway(fd) }
            if stopped { return }
            var polled = [pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0),
                          pollfd(fd: turnedAwayPipe.read, events: Int16(POLLIN), revents: 0)]
            let wait = next.map { Int32(max(0, ($0 - now) * 1000)) + 1 } ?? -1
            _ = poll(&polled, 2, wait)
            if polled[1].revents != 0 {
                _ = scratch.withUnsafeMutableBytes { read(turnedAwayPipe.read, $0.baseAddress, $0.count) }
            }
        }
    }

    /// Discards what the client sent first: a Unix socket closed with unread data makes the
    /// client's read fail (ECONNRESET) instead of showing it the `busy` answer and then the end.
    private func closeTurnedAway(_ fd: Int32) {
        var scratch = [UInt8](repeating: 0, count: 4096)
        while (scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        close(fd)
        counters.releaseTurnedAway()
    }

    private static func makePipe() throws(DaemonExit) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard twofactor_pipe_cloexec_nonblock(&fds) == 0 else {
            throw .failure("cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        return (fds[0], fds[1])
    }
}

/// A thread that nobody joins, with a stack of a chosen size (Foundation's Thread gives no say
/// over detaching, and its default stack is 8 MiB of address space per thread).
enum DetachedThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// 0, or pthread_create's error (EAGAIN: a process or memory limit).
    static func start(stackBytes: Int, _ run: @escaping () -> Void) -> Int32 {
        var attributes = pthread_attr_t()
        let initialised = pthread_attr_init(&attributes)
        guard initialised == 0 else { return initialised }
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, stackBytes)
        let body = Unmanaged.passRetained(Body(run)).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(&thread, &attributes, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, body)
        if started != 0 { Unmanaged<Body>.fromOpaque(body).release() }
        return started
    }
}
