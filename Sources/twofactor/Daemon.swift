// Talking to twofactord: which socket, which account, one request per connection.
// The daemon drops clients that stay silent for a few seconds, and a person may take a minute to
// scan a QR code, so every request opens its own short connection.
#if canImport(Glibc)
import Glibc
#endif
import TwoFactorClient
import TwoFactorCore
import TwoFactorWire

/// The account a command is about, and whether it is the caller's own.
struct Account {
    let name: String
    let isSelf: Bool

    /// The caller's own login name, from the password database entry of the real uid (never from
    /// $USER or $LOGNAME, which the caller controls; the daemon checks it against SO_PEERCRED anyway).
    static func caller() throws(CLIError) -> Account {
        let uid = getuid()
        guard let entry = PasswdLookup.user(uid: uid) else {
            throw CLIError(.failure, "your user id \(uid) has no entry in the password database")
        }
        // The daemon matches names as UTF-8 bytes; a repaired name would be someone else's.
        guard let name = String(validating: entry.name, as: UTF8.self) else {
            throw CLIError(.failure, "your login name is not valid UTF-8")
        }
        return Account(name: name, isSelf: true)
    }

    static func other(_ name: String) -> Account { Account(name: name, isSelf: false) }
}

struct DaemonClient {
    let socketPath: String

    /// `--socket`, else $TWOFACTOR_SOCKET, else the default path.
    init(socketOption: String?) {
        if let socketOption, !socketOption.isEmpty {
            socketPath = socketOption
        } else if let fromEnvironment = getenv("TWOFACTOR_SOCKET"), fromEnvironment.pointee != 0 {
            socketPath = String(cString: fromEnvironment)
        } else {
            socketPath = DaemonConnection.defaultSocketPath
        }
    }

    /// Sends one request on its own connection; connection failures become CLIErrors.
    func send(_ request: WireMessage) throws(CLIError) -> WireMessage {
        do {
            return try DaemonConnection.request(request, socketPath: socketPath, timeoutSeconds: 15)
        } catch {
            throw CLIError.from(error)
        }
    }

    /// Sends a request and returns the answer if its status is one of `expected`; any other
    /// status becomes the CLIError for it.
    func send(_ request: WireMessage, expecting expected: Set<Status> = [.ok],
              account: Account) throws(CLIError) -> WireMessage {
        let response = try send(request)
        if let status = response.status, expected.contains(status) { return response }
        throw CLIError.from(response: response, account: account)
    }

    /// Builds a request for `operation` about `account`, optionally carrying a code.
    /// The code bytes are copied into the message; callers zero their own copy.
    static func request(_ operation: Operation, account: Account? = nil,
                        code: [UInt8]? = nil) throws(CLIError) -> WireMessage {
        var message = WireMessage(operation: operation)
        do {
            if let account { try message.append(.user, string: account.name) }
            if let code { try message.append(.code, bytes: code) }
        } catch {
            throw CLIError(.failure, "the account name or code is too long")
        }
        return message
    }
}

extension WireMessage {
    /// Overwrites the values of fields that may hold a code, once the request has been sent.
    mutating func wipeCodes() {
        for index in fields.indices where fields[index].tag == FieldTag.code.rawValue {
            for byte in fields[index].value.indices { fields[index].value[byte] = 0 }
        }
    }
}
