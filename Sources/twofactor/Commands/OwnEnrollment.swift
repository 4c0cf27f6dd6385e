// What `twofactor recovery-codes` and `disable` share: proving the caller's own enrollment with a
// current code before anything changes.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import TwoFactorCore
import TwoFactorWire

/// Asks the daemon for the caller's status, failing early (before any prompt) when there is
/// nothing to prove a code against or when the account is locked.
func requireEnrolled(_ account: Account, client: DaemonClient) throws(CLIError) -> AccountStatus {
    let response = try client.send(try DaemonClient.request(.status, account: account), account: account)
    let status = AccountStatus(response, user: account.name)
    guard status.enrolled else {
        throw CLIError.from(response: WireMessage(status: .notEnrolled), account: account)
    }
    if status.isLocked() {
        throw CLIError(.lockedOut, CLIError.lockedMessage(account: account, until: status.lockedUntil))
    }
    return status
}

/// Sends `operation` with a code from `source`, asking again after a wrong code when a person is
/// typing. Returns the successful answer.
func sendWithCode(_ operation: Operation, account: Account, client: DaemonClient,
                          source: CodeSource) throws(CLIError) -> WireMessage {
    let tries = source.attempts(3)
    var attempt = 0
    while true {
        attempt += 1
        guard var code = try source.next(prompt: "Current two-factor code (or a recovery code): ", echo: false) else {
            throw CLIError(.failure, "no code was entered; nothing was changed")
        }
        defer { ConstantTime.zero(&code) }
        let outcome: CLIError
        if let problem = codeShapeProblem(code, digits: [6, 7, 8]) {
            outcome = CLIError(.wrongCode, "\(Product.incorrectCodeMessage) (\(problem))")
        } else {
            var request = try DaemonClient.request(operation, account: account, code: code)
            let response = try client.send(request)
            request.wipeCodes()
            if response.status == .ok { return response }
            outcome = CLIError.from(response: response, account: account)
            guard outcome.status == .wrongCode else { throw outcome }
        }
        if attempt >= tries { throw outcome }
        Terminal.writeError("\(outcome.message). Try again.\n")
    }
}
