// Who is asking: the peer's uid from SO_PEERCRED, its login name, and whether it may administer.
import Foundation
import TwoFactorCore

/// Login and account names are the same when their bytes are: Swift's String == treats canonically
/// equivalent strings ("jose" + U+0301 and "jos\u{E9}") as equal, and useradd makes them two users.
/// Every comparison of names in the daemon goes through here (the store compares bytes too: SQLite
/// TEXT with its default BINARY collation).
enum AccountName {
    static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }
    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool { a == b }
}

public struct Caller: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    /// Login name of `uid`; nil if the uid has no passwd entry (it then owns no account).
    public var name: String?
    public var isAdmin: Bool

    public var isRoot: Bool { uid == 0 }

    public init(uid: UInt32, gid: UInt32, pid: Int32, name: String?, isAdmin: Bool) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.name = name
        self.isAdmin = isAdmin
    }

    /// Root (sshd, sudo, login) verifies for anyone; others only for their own login.
    public func mayVerify(_ account: String) -> Bool { isRoot || owns(account) }
    /// Root and the admin group manage anyone's enrollment; others their own.
    public func mayManage(_ account: String) -> Bool { isRoot || isAdmin || owns(account) }
    /// Root and the admin group: list, clock, and reading anyone's status.
    public var mayAdminister: Bool { isRoot || isAdmin }
    /// Admin powers over one account (changes without a code, reset, unlock) are for other people's
    /// accounts only. On their own enrollment administrators prove possession like anyone else,
    /// so a hijacked admin session cannot drop the second factor that guards it (sudo, su).
    /// Root's own account ("root") is root's own too: a uid-0 process could edit the store
    /// anyway, so this is no barrier against root, but the daemon never removes a second
    /// factor on its owner's word alone.
    public func mayAdminister(_ account: String) -> Bool { mayAdminister && !owns(account) }

    func owns(_ account: String) -> Bool { name.map { AccountName.same($0, account) } ?? false }
}

/// Resolves uids to names and admin membership through NSS on every request. No cache: a
/// deleted account's uid can be handed to a new user at once, and a removal from the admin group
/// must take effect at once. Root, the PAM module's caller, needs no lookup at all.
/// NSS calls may block (LDAP, SSSD): `caller` runs on the asking connection's own thread
/// (Server/ClientConnection.swift), so it holds up no one else.
public final class UserDirectory: Sendable {
    let adminGroup: String
    /// Root's login name, for ownership of root's own account and the audit log; looked up once
    /// at start-up (uid 0 is never reassigned), so root's requests never wait for NSS.
    let rootName: String

    public init(adminGroup: String) {
        self.adminGroup = adminGroup
        rootName = PasswdLookup.user(uid: 0).flatMap { String(validating: $0.name, as: UTF8.self) } ?? "root"
    }

    /// Root's caller, without any lookup.
    public func rootCaller(gid: UInt32, pid: Int32) -> Caller {
        Caller(uid: 0, gid: gid, pid: pid, name: rootName, isAdmin: true)
    }

    public func caller(uid: UInt32, gid: UInt32, pid: Int32) -> Caller {
        if uid == 0 { return rootCaller(gid: gid, pid: pid) }
        let account = PasswdLookup.user(uid: uid)
        let isAdmin = account.map { isMember(name: $0.name, primaryGroup: $0.gid) } ?? false
        // A login name that is not UTF-8 matches no account name (those are UTF-8 on the wire);
        // decoding it with repairs could make two users the same account.
        let name = account.flatMap { String(validating: $0.name, as: UTF8.self) }
        return Caller(uid: uid, gid: gid, pid: pid, name: name, isAdmin: isAdmin)
    }

    /// Member of the admin group: listed in its member list, or the group is the primary group.
    func isMember(name: [UInt8], primaryGroup: gid_t) -> Bool {
        guard let group = PasswdLookup.group(named: adminGroup) else { return false }  // no such group: root only
        return group.gid == primaryGroup || group.members.contains { AccountName.same($0, name) }
    }
}
