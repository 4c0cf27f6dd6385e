// The daemon's store seen through `twofactor admin health`: wraps any AccountStore, counts its
// failures and keeps the last one, and probes it with a read on request.
import Foundation

public final class MonitoredStore: AccountStore, @unchecked Sendable {
    public let inner: any AccountStore
    public let location: StoreLocation
    private let lock = NSLock()
    private var errors = 0
    private var lastError: (message: String, at: Int64)?

    public init(_ inner: any AccountStore, location: StoreLocation) {
        self.inner = inner
        self.location = location
    }

    public struct Health: Sendable {
        public var reachable: Bool
        public var latencySeconds: Double?
        public var errors: Int
        public var lastError: String?
        public var lastErrorAt: Int64?
    }

    private func record<T>(_ result: Result<T, StoreError>) {
        guard case .failure(let error) = result else { return }
        lock.lock()
        errors += 1
        lastError = (error.message, Int64(Date().timeIntervalSince1970))
        lock.unlock()
    }

    public func write<T: Sendable>(_ unit: @escaping @Sendable (any AccountTransaction) throws -> T,
                                   completion: @escaping @Sendable (Result<T, StoreError>) -> Void) {
        inner.write(unit) { [self] result in
            record(result)
            completion(result)
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any AccountTransaction) throws -> T,
                                  completion: @escaping @Sendable (Result<T, StoreError>) -> Void) {
        inner.read(body) { [self] result in
            record(result)
            completion(result)
        }
    }

    /// The inner store's read without a thread hop (the fast path of `check`); its failures fall
    /// back to `read`, which records them.
    public func readNow<T>(_ body: (any AccountTransaction) throws -> T) -> T? { inner.readNow(body) }

    public func close() { inner.close() }

    /// Reads one account name as a probe; answers within `timeout` seconds whatever the store does.
    public func probe(timeout: Double, completion: @escaping @Sendable (Health) -> Void) {
        let once = Once()
        let started = DispatchTime.now()
        let finish: @Sendable (Bool) -> Void = { [self] reachable in
            guard once.claim() else { return }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            lock.lock()
            var health = Health(reachable: reachable, latencySeconds: reachable ? elapsed : nil, errors: errors,
                                lastError: lastError?.message, lastErrorAt: lastError?.at)
            lock.unlock()
            // The PostgreSQL store knows its connection's last failure more precisely (SQLSTATE).
            if let connection = (inner as? PostgresAccountStore)?.health, let at = connection.failedAt,
               at >= (health.lastErrorAt ?? 0), let failure = connection.lastFailure {
                health.lastError = failure
                health.lastErrorAt = at
            }
            completion(health)
        }
        read({ try $0.account(named: "") != nil }) { result in
            if case .success = result { finish(true) } else { finish(false) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { [self] in
            guard !once.isClaimed else { return }
            record(Result<Void, StoreError>.failure(StoreError("no answer within \(timeout) s")))
            finish(false)
        }
    }
}

private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false

    func claim() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }

    var isClaimed: Bool {
        lock.lock(); defer { lock.unlock() }
        return done
    }
}
