// The systemd units, the example configuration and the man page that ship with the daemon.
import Foundation
import XCTest
@testable import TwoFactorDaemon

final class DaemonPackagingTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    func read(_ path: String) throws -> String {
        try String(contentsOf: Self.repository.appendingPathComponent(path), encoding: .utf8)
    }

    /// A copy of the units whose ExecStart is the built binary (verify wants an existing
    /// executable) and a MANPATH holding our man page (verify checks Documentation=).
    func stageUnits() throws -> (directory: String, environment: [String: String]) {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let service = try read("systemd/twofactord.service")
            .replacingOccurrences(of: "ExecStart=/usr/local/sbin/twofactord", with: "ExecStart=\(DaemonBinary.path)")
        try service.write(toFile: directory + "/twofactord.service", atomically: true, encoding: .utf8)
        try read("systemd/twofactord.socket").write(toFile: directory + "/twofactord.socket", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: directory + "/man/man8", withIntermediateDirectories: true)
        try read("docs/twofactord.8").write(toFile: directory + "/man/man8/twofactord.8", atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["MANPATH"] = directory + "/man"
        return (directory, environment)
    }

    func run(_ arguments: [String], environment: [String: String], in directory: String) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.environment = environment
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    func testUnitsVerify() throws {
        let (directory, environment) = try stageUnits()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try run(["/usr/bin/systemd-analyze", "verify", "./twofactord.service", "./twofactord.socket"],
                                       environment: environment, in: directory)
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), "", "no warnings expected")
    }

    func testServiceExposureIsAtMostTwo() throws {
        let (directory, environment) = try stageUnits()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try run(["/usr/bin/systemd-analyze", "security", "--offline=yes", "--no-pager", "./twofactord.service"],
                                       environment: environment, in: directory)
        XCTAssertEqual(status, 0, output)
        let marker = "Overall exposure level for twofactord.service: "
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains(marker) }, output)
        let number = line.components(separatedBy: marker)[1].split(separator: " ").first.map(String.init) ?? ""
        let exposure = try XCTUnwrap(Double(number), String(line))
        XCTAssertLessThanOrEqual(exposure, 2.0, output)
    }

    func testServiceHasTheRequiredSettings() throws {
        let lines = Set(try read("systemd/twofactord.service").split(separator: "\n").map(String.init))
        for setting in ["Type=notify", "User=twofactor", "StateDirectory=twofactor", "StateDirectoryMode=0700",
                        "RuntimeDirectory=twofactor", "ConfigurationDirectory=twofactor", "ReadWritePaths=/etc/twofactor",
                        "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                        "NoNewPrivileges=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                        "MemoryDenyWriteExecute=yes", "ExecStart=/usr/local/sbin/twofactord"] {
            XCTAssertTrue(lines.contains(setting), "missing \(setting)")
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("SystemCallFilter=@system-service") })
        XCTAssertFalse(lines.contains("PrivateUsers=yes"), "would hide the peer uids that decide permissions")
        let socket = Set(try read("systemd/twofactord.socket").split(separator: "\n").map(String.init))
        XCTAssertTrue(socket.contains("ListenStream=/run/twofactor/twofactord.sock"))
        XCTAssertTrue(socket.contains("SocketMode=0666"))
    }

    /// twofactord(8) lists every audit result and reason word the daemon can write, and no other.
    func testManPageListsEveryAuditResultAndReason() throws {
        let page = try read("docs/twofactord.8").replacingOccurrences(of: "\n.B ", with: " ")
            .replacingOccurrences(of: "\n", with: " ")
        func words(after label: String) -> Set<String> {
            guard let start = page.range(of: label) else { XCTFail("no '\(label)' in twofactord(8)"); return [] }
            let list = page[start.upperBound...].prefix { $0 != "." }
            let text = list.split(separator: ":").last.map(String.init) ?? ""
            return Set(text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        XCTAssertEqual(words(after: "Results:"), Set(AuditResult.allCases.map(\.rawValue)))
        XCTAssertEqual(words(after: "Reasons:").union(words(after: "Stop reasons")), Set(AuditReason.allCases.map(\.rawValue)))
    }

    /// The example file is generated from the key table (twofactord --print-default-config).
    func testExampleConfigIsGeneratedFromTheKeyTable() throws {
        let example = try read("config/twofactord.conf")
        XCTAssertEqual(example, ConfigKeys.exampleFile(),
                       "regenerate config/twofactord.conf with .build/debug/twofactord --print-default-config")
        XCTAssertEqual(try ConfigParser.parse(example, file: "twofactord.conf"), DaemonConfig())
        // Uncommenting every key line gives the defaults again (the issuer names an example host).
        var keys: [String] = []
        var uncommented = ""
        for line in example.split(separator: "\n") where line.hasPrefix("#") && !line.hasPrefix("# ") && line.contains(" = ") {
            keys.append(String(line.dropFirst().prefix { $0 != " " }))
            uncommented += line.dropFirst() + "\n"
        }
        XCTAssertEqual(keys, ConfigKeys.all.map(\.name))
        var parsed = try ConfigParser.parse(uncommented, file: "uncommented")
        XCTAssertEqual(parsed.issuer, "myhost")
        parsed.issuer = DaemonConfig().issuer
        XCTAssertEqual(parsed.nodeName, "myhost")  // also this machine's name by default
        parsed.nodeName = DaemonConfig().nodeName
        XCTAssertEqual(parsed, DaemonConfig())
    }

    /// twofactord(8) lists every key of the table, once, with the table's default.
    func testManPageListsEveryKeyWithItsDefault() throws {
        let page = try read("docs/twofactord.8")
        let section = try XCTUnwrap(page.components(separatedBy: ".SH CONFIGURATION\n").last?
            .components(separatedBy: "\n.SH ").first)
        var listed: [(name: String, value: String)] = []
        let lines = section.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where index > 0 && lines[index - 1] == ".TP" {
            let settings: [Substring]
            if line.hasPrefix(".BR ") {
                settings = line.split(separator: "\"").filter { $0.contains(" = ") }
            } else if line.hasPrefix(".B ") {
                settings = [line.dropFirst(3)]
            } else {
                continue
            }
            for setting in settings {
                let parts = setting.components(separatedBy: " = ")
                listed.append((parts[0], parts[1].replacingOccurrences(of: "\\fR", with: "")
                    .replacingOccurrences(of: "\\fP", with: "")))
            }
        }
        XCTAssertEqual(listed.map(\.name).sorted(), ConfigKeys.all.map(\.name).sorted())
        for (name, value) in listed {
            let key = try XCTUnwrap(ConfigKeys.named(name), name)
            if key.example != nil {
                // A default of this machine's own (the issuer is the host name).
                XCTAssertTrue(value.hasPrefix("<") && value.hasSuffix(">"), "\(name) = \(value)")
            } else {
                XCTAssertEqual(value, key.defaultText, name)
            }
        }
    }
}
