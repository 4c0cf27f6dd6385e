// User and group lookups through NSS (getpwuid_r, getgrnam_r) for the daemon and the command line.
// One owner of the buffer loop: an entry larger than the buffer (a long GECOS field, a group with
// many members) makes the call answer ERANGE, and the lookup retries with a larger buffer instead
// of taking the user or group for missing. (The PAM module, in Embedded Swift, has its own.)
#if canImport(Glibc)
import Glibc
#endif

public enum PasswdLookup {
    /// A passwd entry: the name as the bytes NSS gave, never repaired or normalised.
    public struct User: Sendable, Equatable {
        public var name: [UInt8]
        public var gid: UInt32
    }

    /// A group entry: its gid and the names in its member list, as bytes.
    public struct Group: Sendable, Equatable {
        public var gid: UInt32
        public var members: [[UInt8]]
    }

    /// The first buffer size, and the largest one tried (entries beyond 4 MiB are refused).
    static let initialBufferSize = 16_384
    static let maximumBufferSize = 1 << 22

    /// The passwd entry of `uid`; nil when there is none or the lookup fails.
    public static func user(uid: UInt32) -> User? {
        lookup(passwd(), { getpwuid_r(uid, $0, $1, $2, $3) }) { found in
            found.pw_name.map { User(name: bytes($0), gid: found.pw_gid) }
        }
    }

    /// The passwd entry named `name`; nil when there is none or the lookup fails.
    public static func user(named name: String) -> User? {
        lookup(passwd(), { getpwnam_r(name, $0, $1, $2, $3) }) { found in
            found.pw_name.map { User(name: bytes($0), gid: found.pw_gid) }
        }
    }

    /// The group named `name`; nil when there is none or the lookup fails.
    public static func group(named name: String) -> Group? {
        lookup(Glibc.group(), { getgrnam_r(name, $0, $1, $2, $3) }) { found in
            var members: [[UInt8]] = []
            var member = found.gr_mem
            while let name = member?.pointee {
                members.append(bytes(name))
                member = member?.advanced(by: 1)
            }
            return Group(gid: found.gr_gid, members: members)
        }
    }

    /// Runs a get*_r call, growing the buffer on ERANGE, and reads the entry while the buffer
    /// its strings point into is still alive.
    static func lookup<Entry, Result>(
        _ empty: Entry,
        _ call: (UnsafeMutablePointer<Entry>, UnsafeMutablePointer<CChar>, Int,
                 UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>) -> Int32,
        read: (Entry) -> Result?
    ) -> Result? {
        var size = initialBufferSize
        while true {
            var entry = empty
            var buffer = [CChar](repeating: 0, count: size)
            let (status, found) = buffer.withUnsafeMutableBufferPointer { storage -> (Int32, Result?) in
                var result: UnsafeMutablePointer<Entry>?
                let status = call(&entry, storage.baseAddress!, storage.count, &result)
                return (status, status == 0 && result != nil ? read(entry) : nil)
            }
            if status == ERANGE && size < maximumBufferSize {
                size *= 4
                continue
            }
            return found
        }
    }

    static func bytes(_ cString: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: cString, count: strlen(cString)))
    }
}
