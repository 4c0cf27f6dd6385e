// Who may own and change the files the daemon trusts: its configuration, its key file and its
// state directory. Whoever else can write one of them chooses the key, the admin group or the
// store, so the daemon refuses to start rather than trust it.
import Foundation

enum TrustedFile {
    /// Why the file `info` describes cannot be trusted, or nil. Its owner must be root or the
    /// daemon's own user, and the `forbidden` mode bits must be clear; `remedy` is the chmod
    /// argument that clears them.
    static func problem(_ info: stat, forbidden: mode_t, access: String, remedy: String) -> String? {
        let me = geteuid()
        if info.st_uid != 0 && info.st_uid != me {
            return "is owned by uid \(info.st_uid), not by root or the daemon's user (uid \(me)); run chown on it"
        }
        if info.st_mode & forbidden != 0 {
            return String(format: "is %@ by group or others (mode %04o); run chmod %@ on it",
                          access, info.st_mode & 0o7777, remedy)
        }
        return nil
    }
}
