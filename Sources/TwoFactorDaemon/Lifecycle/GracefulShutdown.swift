// Graceful shutdown: SIGTERM or SIGINT stops accepting, lets every connection finish the request
// it is working on (a client that already shut down its sending side still gets that answer),
// and waits a bounded time for the connections to close before the event loops stop.
//
// Why these libraries rather than hand-made equivalents:
// - UnixSignalsSequence (swift-service-lifecycle's UnixSignals product) returns only once the
//   signal handlers are registered. The hand-made DispatchSource it replaces was armed
//   asynchronously after SIGTERM had been set to SIG_IGN, so a SIGTERM in that gap was dropped and
//   the daemon ran on (testSigtermDuringStartUpIsNotLost). ServiceGroup itself is not used: the
//   daemon runs one server whose start-up and stop are strictly ordered (store, clock, socket,
//   then READY=1; drain, lookups, event loops, clock, store), which a group of concurrently
//   started services does not express, and it would add swift-async-algorithms to the build.
// - ServerQuiescingHelper (swift-nio-extras) tracks every accepted connection, tells each to
//   quiesce and completes a promise when the last one has closed: no polling of a request
//   counter, and idle connections are closed at once instead of when the event loop stops.
import Dispatch
import Foundation
import NIOCore
import NIOExtras
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

/// A stop request, which may arrive before the listening channel exists, and the drain after it.
final class GracefulShutdown: @unchecked Sendable {
    /// How long the stop waits for connections to finish their request (a wedged store or
    /// directory must not stall it for ever); then the event loops close what is left.
    static let drainTimeout: TimeAmount = .seconds(10)

    private let lock = NSLock()
    private let counters: ServerCounters
    private var quiescing: ServerQuiescingHelper?
    private var drained: EventLoopPromise<Void>?
    private var initiated = false
    private var stopReason: AuditReason?

    init(counters: ServerCounters) { self.counters = counters }

    /// Why the daemon stopped: the signal, or .closed when the listening socket closed by itself.
    var reason: AuditReason { lock.lock(); defer { lock.unlock() }; return stopReason ?? .closed }

    /// A stop asked for by `why`; the first reason is the one logged.
    func request(_ why: AuditReason) {
        lock.lock()
        if stopReason == nil { stopReason = why }
        lock.unlock()
        begin()
    }

    /// The server listens on `server`: a stop requested while starting takes effect now.
    func attach(_ quiescing: ServerQuiescingHelper, server: Channel) {
        lock.lock()
        self.quiescing = quiescing
        // On the server's loop, where the helper completes it.
        drained = server.eventLoop.makePromise()
        let stopping = stopReason != nil
        lock.unlock()
        if stopping { begin() }
    }

    /// Stops accepting and tells every connection to finish; does so once.
    func begin() {
        // First, so a connection set up after its quiesce event went by still sees it (the
        // server's child initializer checks it).
        counters.beginDraining()
        lock.lock()
        let quiescing = self.quiescing, drained = self.drained
        let first = quiescing != nil && !initiated
        if first { initiated = true }
        lock.unlock()
        if first { quiescing?.initiateShutdown(promise: drained) }
    }

    /// Waits until every connection is closed or `drainTimeout` passed, then lets go of the
    /// quiescing helper: it must be gone before the event loops stop (its deinit completes a
    /// promise on one of them).
    func waitUntilDrained() {
        begin()
        lock.lock()
        let drained = self.drained
        lock.unlock()
        if let drained {
            let done = DispatchSemaphore(value: 0)
            drained.futureResult.whenComplete { _ in done.signal() }
            if done.wait(timeout: .now() + .nanoseconds(Int(Self.drainTimeout.nanoseconds))) == .timedOut {
                drained.succeed(())  // nobody waits for it any more
            }
        }
        lock.lock()
        quiescing = nil
        self.drained = nil
        lock.unlock()
    }
}
