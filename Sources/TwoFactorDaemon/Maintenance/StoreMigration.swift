// `twofactord migrate-store --from URL --to URL`: copies every account, as it is stored, from one
// store to another (SQLite to PostgreSQL and back): sealed secrets, pending enrollments, recovery
// code hashes and their use, last step, drift, failures and lockouts. Written against
// AccountStore only, so it works for any pair of stores. Secrets stay sealed: both sides must
// use the same key file. The copy is one unit of work in the target (all or nothing), then read
// back and compared with what was read from the source.
import Foundation

public enum StoreMigration {
    /// One account with its recovery codes, as stored.
    public struct Entry: Sendable, Equatable {
        public var account: AccountRecord
        public var recoveryCodes: [RecoveryCodeRecord]
    }

    public struct Counts: Sendable, Equatable, CustomStringConvertible {
        public var accounts = 0, enrolled = 0, pending = 0, recoveryCodes = 0, usedRecoveryCodes = 0, lockedOut = 0

        init(_ entries: [Entry], now: Int64) {
            accounts = entries.count
            for entry in entries {
                if entry.account.enrollment != nil { enrolled += 1 }
                if entry.account.pending != nil { pending += 1 }
                if let until = entry.account.lockedUntil, until > now { lockedOut += 1 }
                recoveryCodes += entry.recoveryCodes.count
                usedRecoveryCodes += entry.recoveryCodes.filter { $0.usedAt != nil }.count
            }
        }

        public var description: String {
            "\(accounts) account(s): \(enrolled) enrolled, \(pending) pending, \(lockedOut) locked out, "
                + "\(recoveryCodes) recovery code hash(es) (\(usedRecoveryCodes) used)"
        }
    }

    /// Every account with its recovery codes, in one consistent read.
    public static func snapshot(_ store: any AccountStore) throws(StoreError) -> [Entry] {
        try store.readAndWait { transaction in
            try transaction.allAccounts().map { account in
                Entry(account: account, recoveryCodes: try transaction.recoveryCodes(of: account.name)
                        .sorted { $0.hash.lexicographicallyPrecedes($1.hash) })
            }
        }
        // By name bytes, whatever order (collation) the store lists in.
        .sorted { Array($0.account.name.utf8).lexicographicallyPrecedes(Array($1.account.name.utf8)) }
    }

    /// Copies `source` into `target`. A target that holds accounts is refused unless `replace`
    /// (its accounts are then deleted in the same unit). `dryRun` reads both and changes nothing;
    /// a nil target is one that does not exist yet (a dry run does not create it).
    /// Returns what was (or would be) copied.
    public static func run(source: any AccountStore, target: (any AccountStore)?, dryRun: Bool, replace: Bool,
                           now: Int64 = Int64(Date().timeIntervalSince1970),
                           say: (String) -> Void) throws(StoreError) -> Counts {
        let entries = try snapshot(source)
        let counts = Counts(entries, now: now)
        let existing = try target?.readAndWait { try $0.allAccounts().count } ?? 0
        say("source: \(counts)")
        say(target == nil ? "target: does not exist yet" : "target: \(existing) account(s)")
        if existing > 0 && !replace {
            throw StoreError("the target holds \(existing) account(s); nothing was copied (--replace deletes them and copies)")
        }
        if dryRun {
            say("dry run: nothing was written")
            return counts
        }
        guard let target else { throw StoreError("no target store to copy to") }
        try target.writeAndWait { transaction in
            if replace {
                for account in try transaction.allAccounts() { try transaction.deleteAccount(named: account.name) }
            }
            for entry in entries {
                try transaction.save(entry.account)
                try transaction.replaceRecoveryCodes(of: entry.account.name, hashes: entry.recoveryCodes.map(\.hash))
                for code in entry.recoveryCodes {
                    guard let usedAt = code.usedAt else { continue }
                    guard try transaction.markRecoveryCodeUsed(of: entry.account.name, hash: code.hash, at: usedAt) else {
                        throw StoreError("could not mark a used recovery code of \(entry.account.name)")
                    }
                }
            }
        }
        // Read back and compare everything, not only the counts.
        let copied = try snapshot(target)
        guard copied == entries else {
            let differing = zip(entries, copied).first { $0 != $1 }.map { $0.0.account.name } ?? "(count differs)"
            throw StoreError("the target does not read back as the source (first difference: \(differing), "
                             + "\(copied.count) vs \(entries.count) accounts)")
        }
        say("copied and verified: \(Counts(copied, now: now))")
        return counts
    }
}
