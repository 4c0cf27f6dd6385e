import CPAMShim

// Names and uids from NSS (files, SSSD, winbind...), by the bytes NSS gives.

/// The passwd name NSS gives `typed` (a malloc'd copy for the caller to free), or nil when there
/// is no such user. The name is NSS's bytes as they are, never a Swift String: canonically
/// equivalent spellings ("jose" + U+0301 and "jos" + U+00E9) are different accounts.
func passwdName(_ typed: UnsafePointer<CChar>) -> UnsafeMutablePointer<CChar>? {
    withPasswdEntry(typed) { entry in entry.pw_name.flatMap { strdup($0) } }
}

/// The uid of the account named exactly `name`, or nil when there is none.
func userID(_ name: UnsafePointer<CChar>) -> uid_t? {
    withPasswdEntry(name) { entry in entry.pw_uid }
}

/// `body` applied to the passwd entry for `name`, or nil when there is none (or NSS fails).
/// getpwnam_r rather than pam_modutil_getpwnam, which keeps its result as PAM data on the
/// handle and needs the handle to be inside a pam_authenticate call.
func withPasswdEntry<T>(_ name: UnsafePointer<CChar>, _ body: (passwd) -> T?) -> T? {
    var size = 4096
    while size <= 1 << 20 {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        let status = getpwnam_r(name, &entry, buffer, size, &result)
        if status == ERANGE {
            size *= 4
            continue
        }
        guard status == 0, result != nil else { return nil }
        return body(entry)
    }
    return nil
}
