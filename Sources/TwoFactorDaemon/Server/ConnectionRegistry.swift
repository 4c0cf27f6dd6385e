// The connections being served, for the stop: the ones waiting for a request are closed at once,
// the ones answering a request finish it first (a client that already shut down its sending side
// still gets that answer), and the stop waits, bounded, until the last one has gone.
import Foundation

final class ConnectionRegistry: @unchecked Sendable {
    private let condition = NSCondition()
    private var draining = false
    /// Each live connection's socket, and whether it is answering a request. A connection leaves
    /// before it closes its socket, so a descriptor here is never one the kernel reused.
    private var live: [Int32: Bool] = [:]

    /// Admits a new connection; false once the stop began (the caller closes it unanswered).
    func admit(_ fd: Int32) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard !draining else { return false }
        live[fd] = false
        return true
    }

    /// A whole request arrived. False once the stop began: a request not started by then is not
    /// started at all, so every request the daemon works on is answered before its socket closes.
    func startRequest(_ fd: Int32) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard !draining else { return false }
        live[fd] = true
        return true
    }

    /// Its answer went out. False once the stop began: the connection closes instead of waiting.
    func finishRequest(_ fd: Int32) -> Bool {
        condition.lock(); defer { condition.unlock() }
        live[fd] = false
        return !draining
    }

    /// Forgets the connection; its owner closes the socket right after.
    func leave(_ fd: Int32) {
        condition.lock()
        live[fd] = nil
        if live.isEmpty { condition.broadcast() }
        condition.unlock()
    }

    var isDraining: Bool { condition.lock(); defer { condition.unlock() }; return draining }

    /// Starts the stop, once: every connection waiting for a request sees end-of-file at once
    /// (shutting down the receiving side wakes its blocked read).
    func beginDraining() {
        condition.lock(); defer { condition.unlock() }
        guard !draining else { return }
        draining = true
        for (fd, answering) in live where !answering { shutdown(fd, Int32(SHUT_RD)) }
    }

    /// Waits until every connection has gone or `timeout` seconds passed; true when all have.
    func waitUntilEmpty(timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock(); defer { condition.unlock() }
        while !live.isEmpty {
            if !condition.wait(until: deadline) { return live.isEmpty }
        }
        return true
    }
}
