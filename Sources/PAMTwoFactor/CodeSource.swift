import CPAMShim

// Getting the code: from our own prompt, or from PAM_AUTHTOK (use_first_pass, try_first_pass),
// and with forward_pass cut off the end of password+code. What counts as code-shaped is
// CodeShape's (shared with TwoFactorCore).

extension Authentication {
    /// Fills `code`; with forward_pass also puts the password into PAM_AUTHTOK. Returns a PAM
    /// status: anything but PAM_SUCCESS ends the authentication with it.
    mutating func obtainCode(into code: inout SecretBytes) -> Int32 {
        if options.answerSource != .prompt {
            var token: UnsafeRawPointer? = nil
            if pam_get_item(pamh, PAM_AUTHTOK, &token) == PAM_SUCCESS, let token {
                let answer = cStringBytes(token.assumingMemoryBound(to: CChar.self))
                let usable = options.answerSource == .useFirstPass
                    || (options.forwardPass ? CodeShape.codeSplit(answer, digits: options.digits) != nil
                                            : CodeShape.looksLikeCode(answer, digits: options.digits))
                if usable {
                    debug("taking the code from PAM_AUTHTOK")
                    return take(answer, into: &code)
                }
            } else if options.answerSource == .useFirstPass {
                log(pamh, LOG_ERR, "use_first_pass: no PAM_AUTHTOK from an earlier module")
                return PAM_AUTH_ERR
            }
        }
        var response: UnsafeMutablePointer<CChar>? = nil
        let status = twofactor_converse(pamh, PAM_PROMPT_ECHO_OFF, options.effectivePrompt, &response)
        defer { twofactor_free_secret(response) }
        guard status == PAM_SUCCESS else {
            log(pamh, LOG_ERR, "the conversation failed (PAM status \(status))")
            return PAM_CONV_ERR
        }
        guard let response else { return PAM_SUCCESS }  // no answer: an empty code
        return take(cStringBytes(response), into: &code)
    }

    /// Copies the code out of an answer. With forward_pass the answer is password then code: the
    /// code is cut off the end and the password replaces PAM_AUTHTOK for the next module.
    func take(_ answer: UnsafeBufferPointer<UInt8>, into code: inout SecretBytes) -> Int32 {
        guard options.forwardPass else {
            // Longer than any code: left empty, so it is refused like any other non-code.
            if answer.count <= CodeShape.maxLength, let base = answer.baseAddress {
                _ = code.append(base, count: answer.count)
            }
            return PAM_SUCCESS
        }
        guard let split = CodeShape.codeSplit(answer, digits: options.digits), let base = answer.baseAddress else {
            debug("forward_pass: no code at the end of the answer")
            return PAM_SUCCESS  // empty code: rejected as incorrect
        }
        guard code.append(base + split, count: answer.count - split) else { return PAM_SUCCESS }
        var password = SecretBytes(capacity: split + 1)
        guard password.append(base, count: split), password.append(0) else { return PAM_SYSTEM_ERR }
        let status = pam_set_item(pamh, PAM_AUTHTOK, UnsafeRawPointer(password.base))
        if status != PAM_SUCCESS {
            log(pamh, LOG_ERR, "forward_pass: could not set PAM_AUTHTOK (PAM status \(status))")
            return status
        }
        return PAM_SUCCESS
    }
}
