import Foundation
@testable import TwoFactorCore

func hexBytes(_ hex: String) -> [UInt8] {
    let characters = Array(hex.utf8)
    precondition(characters.count % 2 == 0, "odd hex length")
    return stride(from: 0, to: characters.count, by: 2).map { index in
        UInt8(String(decoding: characters[index..<index + 2], as: UTF8.self), radix: 16)!
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

enum OathtoolError: Error, CustomStringConvertible {
    case failed(status: Int32, arguments: [String], stderr: String)
    var description: String {
        switch self {
        case .failed(let status, let arguments, let stderr):
            return "oathtool \(arguments) exited \(status): \(stderr)"
        }
    }
}

/// Runs the independent reference implementation, /usr/bin/oathtool, and returns its output lines.
func oathtool(_ arguments: [String]) throws -> [String] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/oathtool")
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw OathtoolError.failed(
            status: process.terminationStatus, arguments: arguments,
            stderr: String(decoding: errorData, as: UTF8.self))
    }
    return String(decoding: outputData, as: UTF8.self).split(separator: "\n").map(String.init)
}

extension OTPAlgorithm {
    var oathtoolMode: String {
        switch self {
        case .sha1: return "sha1"
        case .sha256: return "sha256"
        case .sha512: return "sha512"
        }
    }
}
