// `twofactord rotate-key`: re-seals every TOTP secret (confirmed and pending) under a new key
// while daemons keep answering. The key file holds a ring (KeyRing) so that every daemon opens
// secrets sealed under the old or the new key during the rotation, in three steps:
//   stage    add a new key that only opens           (file: recovery, OLD, NEW)
//   promote  make it the sealing key, re-seal all     (file: recovery, NEW, OLD)
//   finish   re-seal what stragglers sealed, drop OLD (file: recovery, NEW)
// On one machine `--step all` does the three at once; a fleet copies the key file to every node
// after each step (README.md, "Many nodes"). Each account is re-sealed in a unit of its own, so
// logins never wait for more than one account's re-seal.
import Foundation
import TwoFactorCore

public enum KeyRotation {
    public enum Step: String, CaseIterable, Sendable {
        case stage, promote, finish, all
    }

    public struct Report: Sendable, Equatable {
        public var accounts = 0
        public var resealed = 0
        public var ring: String = ""
    }

    /// Runs `step`; `say` gets one line per thing done. Throws, changing nothing more, when a
    /// secret opens under no key of the ring (the old key stays in the file then).
    public static func run(step: Step, keyFile: String, store: any AccountStore,
                           say: (String) -> Void) throws -> Report {
        var report = Report()
        switch step {
        case .stage:
            try stage(keyFile, say)
        case .promote:
            try promote(keyFile, say)
            try reseal(store, keyFile, &report, say)
        case .finish:
            try finish(keyFile, store, &report, say)
        case .all:
            if try KeyFile.readRing(path: keyFile).openOnly == nil { try stage(keyFile, say) }
            try promote(keyFile, say)
            try reseal(store, keyFile, &report, say)
            try finish(keyFile, store, &report, say)
        }
        report.ring = describe(try KeyFile.readRing(path: keyFile))
        return report
    }

    static func describe(_ ring: KeyRing) -> String {
        ring.openOnly == nil ? "one sealing key" : "a sealing key and a key that only opens (rotation under way)"
    }

    private static func stage(_ keyFile: String, _ say: (String) -> Void) throws {
        var ring = try KeyFile.readRing(path: keyFile)
        guard ring.openOnly == nil else {
            throw StoreError("\(keyFile) already holds a staged key: run 'twofactord rotate-key --step promote'")
        }
        ring.openOnly = SecureRandom.bytes(KeyFile.length)
        try KeyFile.replace(path: keyFile, with: ring)
        say("staged a new key in \(keyFile) (it only opens); copy the file to every node, then run --step promote")
    }

    private static func promote(_ keyFile: String, _ say: (String) -> Void) throws {
        var ring = try KeyFile.readRing(path: keyFile)
        guard let staged = ring.openOnly else {
            throw StoreError("\(keyFile) holds no staged key: run 'twofactord rotate-key --step stage' first")
        }
        ring.openOnly = ring.sealing
        ring.sealing = staged
        try KeyFile.replace(path: keyFile, with: ring)
        say("the new key seals from now on; the old key still opens")
    }

    private static func finish(_ keyFile: String, _ store: any AccountStore, _ report: inout Report,
                               _ say: (String) -> Void) throws {
        // Again: a daemon that had not read the promoted file yet may have sealed under the old key.
        try reseal(store, keyFile, &report, say)
        var ring = try KeyFile.readRing(path: keyFile)
        guard ring.openOnly != nil else { return }
        ring.openOnly = nil
        try KeyFile.replace(path: keyFile, with: ring)
        say("the old key is gone from \(keyFile): copy the file to every node")
    }

    /// Re-seals, account by account, every secret not sealed under the ring's sealing key.
    private static func reseal(_ store: any AccountStore, _ keyFile: String, _ report: inout Report,
                               _ say: (String) -> Void) throws {
        let keys = DerivedKeys(ring: try KeyFile.readRing(path: keyFile))
        let names = try store.readAndWait { try $0.allAccounts().map(\.name) }
        report.accounts = names.count
        var failed: [String] = []
        for name in names {
            do {
                // The unit reads and writes the row atomically (AccountStore's guarantee), so a
                // login on any node between the read and the write cannot be lost or undone.
                let changed = try store.writeAndWait { transaction -> Int in
                    guard var account = try transaction.account(named: name) else { return 0 }
                    var changed = 0
                    if let enrollment = account.enrollment, !keys.isSealedUnderSealingKey(enrollment.sealedSecret, account: name) {
                        account.enrollment?.sealedSecret = try resealed(enrollment.sealedSecret, name, keys)
                        changed += 1
                    }
                    if let pending = account.pending, !keys.isSealedUnderSealingKey(pending.sealedSecret, account: name) {
                        account.pending?.sealedSecret = try resealed(pending.sealedSecret, name, keys)
                        changed += 1
                    }
                    if changed > 0 { try transaction.save(account) }
                    return changed
                }
                report.resealed += changed
            } catch {
                failed.append(name)
            }
        }
        say("re-sealed \(report.resealed) secret(s) of \(names.count) account(s)")
        guard failed.isEmpty else {
            throw StoreError("the secrets of \(failed.count) account(s) open under no key of \(keyFile) and were left as they are: "
                             + failed.prefix(10).joined(separator: ", "))
        }
    }

    private static func resealed(_ sealed: [UInt8], _ account: String, _ keys: DerivedKeys) throws -> [UInt8] {
        var secret = try keys.openSecret(sealed, account: account)
        defer { ConstantTime.zero(&secret) }
        return try keys.sealSecret(secret, account: account)
    }
}
