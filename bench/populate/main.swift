// bench/run only, never installed: fills a twofactord store with enrolled accounts much faster
// than over the socket, for the 1,000,000-account scale tier. It runs the daemon's own code on
// the daemon's own files: the key file and store named by a twofactord.conf (its SQLite file or
// its PostgreSQL database, `store = postgresql`), AccountRules' enrollBegin + enrollConfirm (a
// sealed secret, eight hashed recovery codes) in store units that the store commits in groups.
// Run it while no daemon uses that store.
//
//   twofactor-bench-populate --config twofactord.conf --count N --prefix P --out ACCOUNTS
// ACCOUNTS gets "name base32secret confirmed_step" lines (mode 0600): what bench/loadgen reads.
import Foundation
import TwoFactorCore
import TwoFactorDaemon

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("twofactor-bench-populate: \(message)\n".utf8))
    exit(1)
}

var options: [String: String] = [:]
var arguments = CommandLine.arguments.dropFirst()
while let name = arguments.popFirst() {
    guard let value = arguments.popFirst() else { fail("\(name) needs a value") }
    options[name] = value
}
guard let configPath = options["--config"], let count = Int(options["--count"] ?? ""),
      let prefix = options["--prefix"], let outPath = options["--out"] else {
    fail("usage: --config twofactord.conf --count N --prefix P --out ACCOUNTS")
}

var config: DaemonConfig
do { config = try ConfigParser.load(path: configPath, missingIsDefault: false) } catch { fail("\(error)") }
// The PostgreSQL store gives each batch of queued units postgres_timeout (2 s by default, a
// login's budget); the thousands of enrollments queued here take longer than that in one batch.
config.postgres.timeout = max(config.postgres.timeout, 600)
// As the daemon creates it; the daemon checks it again when it starts.
try? FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true,
                                         attributes: [.posixPermissions: 0o700])
let rules: AccountRules
let store: any AccountStore
do {
    rules = AccountRules(policy: AccountPolicy(config: config), keys: DerivedKeys(master: try KeyFile.loadOrCreate(path: config.keyFile)))
    // The store the daemon would open with this config: its SQLite file or its PostgreSQL database.
    store = try StoreLocation.configured(config).open(mustExist: false)
} catch { fail("\(error)") }

guard FileManager.default.createFile(atPath: outPath, contents: nil, attributes: [.posixPermissions: 0o600]),
      let out = FileHandle(forWritingAtPath: outPath) else { fail("cannot write \(outPath)") }
let lock = NSLock()
var lines: [String] = []
var failures = 0
var firstFailure: String?
let inFlight = DispatchSemaphore(value: 20_000)  // bounds memory; the writer batches what is queued
let done = DispatchGroup()

for index in 0..<count {
    let name = String(format: "%@%07d", prefix, index)
    inFlight.wait()
    done.enter()
    store.write({ transaction -> String? in
        let now = Int64(Date().timeIntervalSince1970)
        let moment = Moment(now: now, otpTime: now)
        let begun = try rules.enrollBegin(transaction, user: name, issuer: nil, at: moment)
        guard let start = begun.value else { return nil }
        let code = TOTP(secret: start.secret, parameters: start.parameters).code(at: now)
        guard try rules.enrollConfirm(transaction, user: name, code: Array(code.utf8), at: moment).status == .ok else { return nil }
        return "\(name) \(Base32.encode(start.secret)) \(now / Int64(start.parameters.period))\n"
    }) { result in
        lock.lock()
        switch result {
        case .success(let line?): lines.append(line)
        case .success(nil): failures += 1; firstFailure = firstFailure ?? "an enrollment was refused by AccountRules"
        case .failure(let error): failures += 1; firstFailure = firstFailure ?? "store: \(error)"
        }
        if lines.count >= 10_000 { out.write(Data(lines.joined().utf8)); lines.removeAll(keepingCapacity: true) }
        lock.unlock()
        inFlight.signal()
        done.leave()
    }
}
done.wait()
out.write(Data(lines.joined().utf8))
try? out.close()
store.close()
if failures > 0 { fail("\(failures) of \(count) enrollments failed (the first: \(firstFailure ?? "?"))") }
