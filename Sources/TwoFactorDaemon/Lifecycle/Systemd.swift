// systemd integration: the listening socket systemd may pass (socket activation) and the state
// notifications of Type=notify (READY=1, STOPPING=1). Written against the documented environment
// protocol rather than linking libsystemd, so the daemon runs the same with or without systemd.
import Foundation

enum Systemd {
    /// The listening socket passed by systemd (sd_listen_fds(3): LISTEN_PID is ours, LISTEN_FDS
    /// sockets from fd 3 on), if any. The variables are removed so no child inherits them.
    static func adoptedSocket() throws(DaemonExit) -> Int32? {
        let environment = ProcessInfo.processInfo.environment
        guard let pid = environment["LISTEN_PID"], let count = environment["LISTEN_FDS"], Int32(pid) == getpid() else {
            return nil
        }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        guard count == "1" else {
            throw .configuration("systemd passed \(count) sockets; twofactord expects exactly one (ListenStream=)")
        }
        let fd: Int32 = 3
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ("@" starts an abstract
    /// name). Without systemd there is no such variable and nothing is sent.
    static func notify(_ state: String) {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let offset = abstract ? 1 : 0
        guard bytes.count + offset < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index + offset] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + offset + bytes.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, message.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
    }
}
