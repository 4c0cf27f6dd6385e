// Runs the real twofactord binary on a private socket, state directory and key file.
import Foundation
import TwoFactorClient
import TwoFactorCore
import TwoFactorWire
import XCTest

enum DaemonBinary {
    /// `<scratch>/debug/twofactord`, next to the test bundle (or $TWOFACTORD).
    static var path: String {
        if let explicit = ProcessInfo.processInfo.environment["TWOFACTORD"] { return explicit }
        var candidates: [URL] = []
        if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for bundle in Bundle.allBundles { candidates.append(bundle.bundleURL.deletingLastPathComponent()) }
        for directory in candidates {
            let path = directory.appendingPathComponent("twofactord").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return candidates.first!.appendingPathComponent("twofactord").path
    }
}

final class DaemonProcess {
    let directory: String
    let socket: String
    let stateDirectory: String
    let keyFile: String
    let configPath: String
    let logPath: String
    var settings: [String: String]
    private(set) var process: Process?

    init(_ overrides: [String: String] = [:]) throws {
        directory = try Self.makeTemporaryDirectory()
        socket = directory + "/twofactord.sock"
        stateDirectory = directory + "/state"
        keyFile = directory + "/secret.key"
        configPath = directory + "/twofactord.conf"
        logPath = directory + "/stderr.log"
        settings = [
            "socket": socket, "state_directory": stateDirectory, "key_file": keyFile,
            "log": "stderr", "ntp_servers": "", "issuer": "twofactor-test",
        ]
        settings.merge(overrides) { _, new in new }
    }

    static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/tfd-xctest-XXXXXX".utf8CString)
        guard let result = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        let path = String(cString: result)
        chmod(path, 0o755)
        return path
    }

    func writeConfig() throws {
        var text = "# written by DaemonTestSupport\n"
        for (key, value) in settings.sorted(by: { $0.key < $1.key }) { text += "\(key) = \(value)\n" }
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        // Whatever the umask of the test: the daemon refuses a configuration others can write.
        chmod(configPath, 0o644)
    }

    /// Starts the daemon and waits until it answers on the socket.
    @discardableResult
    func start(timeout: TimeInterval = 20) throws -> DaemonProcess {
        try writeConfig()
        let process = try Self.launch([DaemonBinary.path, "--config", configPath], logPath: logPath)
        self.process = process
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning {
                throw TestFailure("twofactord exited with \(process.terminationStatus):\n\(log())")
            }
            if (try? DaemonConnection(socketPath: socket, timeoutSeconds: 1)) != nil { return self }
            usleep(20_000)
        }
        throw TestFailure("twofactord did not listen on \(socket):\n\(log())")
    }

    static func launch(_ arguments: [String], logPath: String, environment: [String: String]? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        process.standardInput = FileHandle.nullDevice
        if let environment { process.environment = environment }
        try process.run()
        return process
    }

    /// Sends SIGTERM to the daemon we started and returns its exit status.
    @discardableResult
    func stop(signal number: Int32 = SIGTERM) -> Int32? {
        guard let process else { return nil }
        if process.isRunning { kill(process.processIdentifier, number) }
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        self.process = nil
        return process.terminationStatus
    }

    func restart() throws {
        XCTAssertEqual(stop(), 0)
        try start()
    }

    func destroy() {
        stop(signal: SIGKILL)
        try? FileManager.default.removeItem(atPath: directory)
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func connect() throws -> DaemonConnection { try DaemonConnection(socketPath: socket, timeoutSeconds: 10) }

    func send(_ operation: TwoFactorWire.Operation, _ fields: [(FieldTag, String)] = []) throws -> WireMessage {
        var request = WireMessage(operation: operation)
        for (tag, value) in fields { try request.append(tag, string: value) }
        return try DaemonConnection.request(request, socketPath: socket, timeoutSeconds: 10)
    }

    /// Enrolls `user` as root and confirms with a code computed by Core's TOTP.
    func enroll(_ user: String) throws -> Enrolled {
        let begun = try send(.enrollBegin, [(.user, user)])
        XCTAssertEqual(begun.status, .ok)
        let secret = try Base32.decode(begun.string(.secret) ?? "")
        let enrolled = Enrolled(user: user, secret: secret, base32: begun.string(.secret) ?? "", recoveryCodes: [])
        let confirmed = try send(.enrollConfirm, [(.user, user), (.code, enrolled.code())])
        XCTAssertEqual(confirmed.status, .ok)
        var result = enrolled
        result.recoveryCodes = confirmed.allStrings(.recoveryCode)
        XCTAssertEqual(result.recoveryCodes.count, 8)
        return result
    }
}

struct Enrolled {
    var user: String
    var secret: [UInt8]
    var base32: String
    var recoveryCodes: [String]

    /// The code for now + `stepsAhead` periods (window 1 accepts one step ahead: a fresh code).
    func code(stepsAhead: Int64 = 0) -> String {
        TOTP(secret: secret, parameters: .standard).code(at: Int64(Date().timeIntervalSince1970) + 30 * stepsAhead)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command and returns its exit status and combined output.
func runCommand(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A signal mask line of /proc/PID/status (SigCgt, SigIgn, SigBlk) as bits; 0 if unreadable.
func signalMask(_ pid: Int32, _ field: String) -> UInt64 {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
        return UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
    }
    return 0
}

/// A bare Unix socket for tests that need what DaemonConnection does not offer (shutdown).
final class RawSocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { close(fd); throw TestFailure("connect failed: \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) } }
    func shutdownWriting() { shutdown(fd, Int32(SHUT_WR)) }

    /// Everything until the daemon closes the connection.
    func readToEnd() -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return result }
            result += buffer[0..<count]
        }
    }
}
