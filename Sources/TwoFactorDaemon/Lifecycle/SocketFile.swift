// The daemon's own socket file, when systemd does not pass one, with three guarantees: the file is
// created with its final mode (no client ever finds it narrower), a stale socket nobody listens on
// is replaced while a live daemon's is refused, and at exit the path is removed only if it is
// still ours (a newer daemon may have put its own socket there since).
import Foundation

struct SocketFile {
    let path: String
    /// Device, inode and change time of the file we created (an inode number alone is reused at
    /// once when a file is replaced).
    private let identity: [Int64]?

    /// Binds and listens on `path` with `mode`, after making the directory and clearing a stale
    /// socket. Returns the file and the listening descriptor (for ServerBootstrap.withBoundSocket).
    static func bind(path: String, mode: Int) throws(DaemonExit) -> (SocketFile, Int32) {
        try prepare(path)
        let fd = try listeningSocket(path: path, mode: mode)
        return (SocketFile(path: path, identity: fileIdentity(path)), fd)
    }

    /// Removes the socket file we created, unless it has since been replaced (a newer daemon
    /// listening there must keep its socket).
    func removeIfStillOurs() {
        guard let identity, let current = Self.fileIdentity(path), current == identity else { return }
        unlink(path)
    }

    /// Creates the socket's directory if missing, and removes a stale socket nobody listens on.
    private static func prepare(_ path: String) throws(DaemonExit) {
        let directory = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch {
                throw .failure("cannot listen on \(path): \(error)")
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw .failure("\(path) exists and is not a socket; refusing to replace it")
        }
        if someoneListens(on: path) {
            throw .failure("another daemon is already listening on \(path)")
        }
        unlink(path)
    }

    /// A listening Unix socket at `path`, created with its final mode (the umask is narrowed to
    /// it around bind), then chmod'ed to it exactly.
    private static func listeningSocket(path: String, mode: Int) throws(DaemonExit) -> Int32 {
        guard var address = unixAddress(path) else { throw .failure("socket path too long: \(path)") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .failure("socket: \(String(cString: strerror(errno)))") }
        let previousMask = umask(mode_t(~mode & 0o777))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindError = errno
        umask(previousMask)
        guard bound == 0 else {
            close(fd)
            throw .failure("cannot bind \(path): \(String(cString: strerror(bindError)))")
        }
        guard chmod(path, mode_t(mode)) == 0, listen(fd, 256) == 0 else {
            let error = errno
            close(fd)
            unlink(path)
            throw .failure("cannot listen on \(path): \(String(cString: strerror(error)))")
        }
        return fd
    }

    private static func fileIdentity(_ path: String) -> [Int64]? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return [Int64(bitPattern: UInt64(info.st_dev)), Int64(bitPattern: UInt64(info.st_ino)),
                Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec)]
    }

    private static func someoneListens(on path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard var address = unixAddress(path) else { return false }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    private static func unixAddress(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return address
    }
}
