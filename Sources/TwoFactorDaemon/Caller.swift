// Who is asking: the peer's uid from SO_PEERCRED, its login name, and whether it may administer.
import Foundation

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
    public var mayAdminister: Bool { isRoot || isAdmin }

    func owns(_ account: String) -> Bool { name != nil && name == account }
}

/// Resolves uids to names and admin membership through NSS on every request. No cache: a
/// deleted account's uid can be handed to a new user at once, and a removal from the admin group
/// must take effect at once. Root, the PAM module's caller, needs no lookup at all.
public final class UserDirectory: Sendable {
    let adminGroup: String

    /// Root's login name, for the audit log; uid 0 is never reassigned.
    static let rootName = passwdEntry(uid: 0)?.name ?? "root"

    public init(adminGroup: String) { self.adminGroup = adminGroup }

    public func caller(uid: UInt32, gid: UInt32, pid: Int32) -> Caller {
        if uid == 0 {
            return Caller(uid: uid, gid: gid, pid: pid, name: Self.rootName, isAdmin: true)
        }
        let account = Self.passwdEntry(uid: uid)
        let isAdmin = account.map { isMember(name: $0.name, primaryGroup: $0.gid) } ?? false
        return Caller(uid: uid, gid: gid, pid: pid, name: account?.name, isAdmin: isAdmin)
    }

    /// Member of the admin group: listed in its member list, or the group is the primary group.
    func isMember(name: String, primaryGroup: gid_t) -> Bool {
        var group = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        while true {
            let status = getgrnam_r(adminGroup, &group, &buffer, buffer.count, &result)
            if status == ERANGE && buffer.count < 1 << 22 {
                buffer = [CChar](repeating: 0, count: buffer.count * 4)
                continue
            }
            guard status == 0, result != nil else { return false }  // no such group: root only
            break
        }
        if group.gr_gid == primaryGroup { return true }
        var member = group.gr_mem
        while let entry = member?.pointee {
            if String(cString: entry) == name { return true }
            member = member?.advanced(by: 1)
        }
        return false
    }

    static func passwdEntry(uid: UInt32) -> (name: String, gid: gid_t)? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        while true {
            let status = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
            if status == ERANGE && buffer.count < 1 << 22 {
                buffer = [CChar](repeating: 0, count: buffer.count * 4)
                continue
            }
            guard status == 0, result != nil, let name = entry.pw_name else { return nil }
            return (String(cString: name), entry.pw_gid)
        }
    }
}
