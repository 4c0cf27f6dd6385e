// What `twofactor admin doctor` reads from the machine: files (of the live system or of a tree
// under --root), `sshd -T`, the password and shadow databases, and file modes. The judging is in
// TwoFactorDoctor; this file only gathers.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorCore
// Only the doctor's own names: the library also compiles the module's shared files (Product,
// Wire), whose public names would clash with TwoFactorWire's.
import protocol TwoFactorDoctor.ConfigFiles
import struct TwoFactorDoctor.PamConfig
import enum TwoFactorDoctor.Severity
import struct TwoFactorDoctor.Finding
import struct TwoFactorDoctor.StackAnalysis
import struct TwoFactorDoctor.StackVerdict
import struct TwoFactorDoctor.Caller
import struct TwoFactorDoctor.TwoFactorOptions
import struct TwoFactorDoctor.SshdSettings
import struct TwoFactorDoctor.SshdAnalysis

/// Files of the live system (root "") or of a tree under --root.
struct TreeFiles: ConfigFiles {
    let root: String

    func hostPath(_ path: String) -> String { root.isEmpty ? path : root + path }

    func read(_ path: String) -> String? { DoctorSystem.readFile(hostPath(path)) }
}

enum DoctorSystem {
    /// A regular file's text (at most 4 MB: no configuration file is larger).
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 4 << 20 {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func fileStatus(_ path: String) -> stat? {
        var info = stat()
        return stat(path, &info) == 0 ? info : nil
    }

    /// Runs `argv` (argv[0] an absolute path) with no input; returns the exit status (or -1 when
    /// it could not start or died by a signal) and what it printed.
    static func run(_ argv: [String]) -> (status: Int32, output: String, errors: String) {
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        // Plain pipe(): the child gets them through dup2; ours are closed on every path below.
        guard pipe(&outPipe) == 0 else { return (-1, "", "pipe failed") }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            return (-1, "", "pipe failed")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        for fd in outPipe + errPipe { posix_spawn_file_actions_addclose(&actions, fd) }
        defer { posix_spawn_file_actions_destroy(&actions) }
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for arg in cArgs { free(arg) } }
        let environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { for variable in environment { free(variable) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environment)
        close(outPipe[1]); close(errPipe[1])
        defer { close(outPipe[0]); close(errPipe[0]) }
        guard spawned == 0 else { return (-1, "", "\(argv[0]): \(String(cString: strerror(spawned)))") }
        let output = drain(outPipe[0])
        let errors = drain(errPipe[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = (status & 0x7f) == 0
        return (exited ? (status >> 8) & 0xff : -1, output, errors)
    }

    static func drain(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            if bytes.count < 1 << 20 { bytes += buffer[0..<count] }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Paths matching a glob pattern (sshd's Include), sorted as glob(3) sorts them.
    static func glob(_ pattern: String) -> [String] {
        var result = glob_t()
        defer { globfree(&result) }
        guard Glibc.glob(pattern, 0, nil, &result) == 0 else { return [] }
        return (0..<Int(result.gl_pathc)).compactMap { result.gl_pathv[$0].map { String(cString: $0) } }
    }

    /// Writes `text` to a new private file under /tmp and returns its path.
    static func temporaryFile(_ text: String) -> String? {
        var template = Array("/tmp/twofactor-doctor-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        Terminal.writeAll(fd, &bytes)
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An account of the password database.
struct PasswdEntry {
    var name: String
    var uid: UInt32
    var shell: String

    /// Someone can log in to it: root, or an ordinary account with a real shell.
    var canLogIn: Bool {
        let noShell = shell.isEmpty ? false : shell.hasSuffix("/nologin") || shell.hasSuffix("/false") || shell.hasSuffix("/sync")
        return !noShell && (uid == 0 || (uid >= 1000 && uid != 65534))
    }

    /// /etc/passwd lines.
    static func parse(_ text: String) -> [PasswdEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 7, let uid = UInt32(fields[2]) else { return nil }
            return PasswdEntry(name: String(fields[0]), uid: uid, shell: String(fields[6]))
        }
    }

    /// Names whose shadow password field is empty (no password at all).
    static func emptyPasswords(shadow: String) -> [String] {
        shadow.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            return fields.count >= 2 && fields[1].isEmpty ? String(fields[0]) : nil
        }
    }

    /// The live database through NSS (so LDAP or sssd accounts count too).
    static func exists(_ name: String) -> Bool {
        PasswdLookup.user(named: name) != nil
    }
}
