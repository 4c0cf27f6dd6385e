// Graceful shutdown: SIGTERM or SIGINT stops accepting, lets every connection finish the request
// it is working on (a client that already shut down its sending side still gets that answer),
// and waits a bounded time for the connections to close (SocketServer, ConnectionRegistry).
//
// Why swift-service-lifecycle's UnixSignalsSequence rather than a hand-made equivalent: it returns
// only once the signal handlers are registered. The hand-made DispatchSource it replaced was armed
// asynchronously after SIGTERM had been set to SIG_IGN, so a SIGTERM in that gap was dropped and
// the daemon ran on (testSigtermDuringStartUpIsNotLost). ServiceGroup itself is not used: the
// daemon runs one server whose start-up and stop are strictly ordered (store, clock, socket, then
// READY=1; drain, clock, store), which a group of concurrently started services does not express,
// and it would add swift-async-algorithms to the build.
import Dispatch
import Foundation
import UnixSignals

/// The stop signals, trapped before anything else so that none sent during start-up is lost.
enum StopSignals {
    /// Calls `onSignal` (.sigterm or .sigint) for each signal; returns once they are trapped.
    /// Cancel the task to untrap them.
    static func trap(_ onSignal: @escaping @Sendable (AuditReason) -> Void) -> Task<Void, Never> {
        let trapped = DispatchSemaphore(value: 0)
        let task = Task.detached {
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            trapped.signal()
            for await signal in signals { onSignal(signal == .sigint ? .sigint : .sigterm) }
        }
        trapped.wait()
        return task
    }
}

/// A stop request, which may arrive before the server exists.
final class GracefulShutdown: @unchecked Sendable {
    /// How long the stop waits for connections to finish their request (a wedged store or
    /// directory must not stall it for ever); the daemon then exits with the rest unanswered.
    static let drainTimeout = 10.0

    private let lock = NSLock()
    private var server: SocketServer?
    private var stopReason: AuditReason?

    /// Why the daemon stopped: the signal, or .closed when the listening socket closed by itself.
    var reason: AuditReason { lock.lock(); defer { lock.unlock() }; return stopReason ?? .closed }

    /// A stop asked for by `why`; the first reason is the one logged.
    func request(_ why: AuditReason) {
        lock.lock()
        if stopReason == nil { stopReason = why }
        let server = self.server
        lock.unlock()
        server?.stop()
    }

    /// The server is about to run: a stop requested while starting takes effect now.
    func attach(_ server: SocketServer) {
        lock.lock()
        self.server = server
        let stopping = stopReason != nil
        lock.unlock()
        if stopping { server.stop() }
    }

    /// After the server's run ended (it ends only once stopped, its connections told to finish):
    /// waits until they have, at most `drainTimeout`.
    func waitUntilDrained() {
        lock.lock()
        let server = self.server
        lock.unlock()
        _ = server?.waitUntilDrained(timeout: Self.drainTimeout)
    }
}
