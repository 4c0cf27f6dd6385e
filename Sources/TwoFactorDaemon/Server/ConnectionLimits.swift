// How many connections the daemon serves at once, and for whom. Every connection has a thread of
// its own (SocketServer.swift), so these limits also bound the daemon's threads, and its
// descriptors: two per connection (its socket, and its thread's epoll instance for accepting;
// the systemd unit's LimitNOFILE=4096 leaves room for the default limits several times over).
import Foundation

/// Who is at the other end of a connection (SO_PEERCRED).
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

public struct ServerSettings: Sendable {
    /// Connections shared by all non-root callers.
    public var maxConnections: Int
    public var readTimeout: Double

    public init(maxConnections: Int, readTimeout: Double) {
        self.maxConnections = maxConnections
        self.readTimeout = readTimeout
    }

    /// What one non-root user may hold of the shared connections.
    public var connectionsPerUser: Int { min(8, maxConnections) }
    /// Root's own connections, beside the shared ones.
    public var rootConnections: Int { 4 * maxConnections }
    /// Connections being told `busy` at once; more are closed without an answer, so a flood
    /// cannot exhaust descriptors.
    public var turnedAwayConnections: Int { maxConnections + 16 }
}

/// Counts open connections, shared by the accepting thread and the connections' threads.
final class ServerCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var connections = 0
    private var connectionsByUser: [UInt32: Int] = [:]
    private var rootConnections = 0
    private var turnedAway = 0

    /// Admits a connection from `uid`. Root (sshd, sudo, login) has slots of its own, so no local
    /// user can crowd logins out; every other user holds at most `perUserLimit` of the shared
    /// `limit`, so one user cannot take them all from the others either.
    func acquireConnection(uid: UInt32, limits: ServerSettings) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if uid == 0 {
            guard rootConnections < limits.rootConnections else { return false }
            rootConnections += 1
            return true
        }
        let held = connectionsByUser[uid, default: 0]
        guard connections < limits.maxConnections, held < limits.connectionsPerUser else { return false }
        connections += 1
        connectionsByUser[uid] = held + 1
        return true
    }

    func releaseConnection(uid: UInt32) {
        lock.lock(); defer { lock.unlock() }
        if uid == 0 {
            rootConnections -= 1
            return
        }
        connections -= 1
        let held = connectionsByUser[uid, default: 1] - 1
        connectionsByUser[uid] = held > 0 ? held : nil
    }

    func acquireTurnedAway(limit: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard turnedAway < limit else { return false }
        turnedAway += 1
        return true
    }
    func releaseTurnedAway() { lock.lock(); turnedAway -= 1; lock.unlock() }
}
