// libFuzzer target "codeinput": CodeInput.classify (Sources/TwoFactorCore/CodeInput.swift), what
// the daemon makes of a typed answer, checked against the PAM module's pre-filters in CodeShape
// (Sources/TwoFactorCore/CodeShape.swift, the file the module compiles through a symlink):
// isPlausibleCode, looksLikeCode (try_first_pass) and codeSplit (forward_pass).
//
// Input: first byte picks the digits (6, 7 or 8), the rest is the answer as typed.
// Properties checked on every input:
//  - .totp(s): s is exactly `digits` ASCII digits and the answer is those digits plus spaces.
//  - .recovery(r) for an imported google-authenticator scratch code: 8 digits (only where TOTP
//    codes are shorter), the answer without spaces.
//  - .recovery(r) otherwise: r is 12 characters of the recovery alphabet, is its own normal form, and is
//    the answer uppercased without spaces and dashes.
//  - .invalid(e): e fits the answer (empty means nothing but spaces, tooLong means over
//    CodeShape.maxLength bytes, notUTF8, a control character, a wrong length that is wrong).
//  - classifying the normal form (or the printed XXXX-XXXX-XXXX form) gives the same code.
//  - what the daemon would accept, the module sends: isPlausibleCode and (try_first_pass)
//    looksLikeCode are true for it; CodeShape.recoveryCharacter is RecoveryCodes.alphabet.
//  - forward_pass: codeSplit finds the code the daemon accepts after any password (the answer as
//    password, then the normal or printed form of an accepted code), and whatever codeSplit cuts
//    off the end of the answer is a code the daemon accepts.
import TwoFactorCore

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("codeinput property violated: \(message)")
}

func isScratchCode(_ code: String) -> Bool {
    code.utf8.count == GoogleAuthenticatorFile.scratchCodeLength && code.utf8.allSatisfy(CodeShape.isDigit)
}

func uppercased(_ byte: UInt8) -> UInt8 { (97...122).contains(byte) ? byte - 32 : byte }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let digits = 6 + Int(data[0] % 3)
    let answer = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if CodeShape.maxLength != CodeInput.maxLength { fail("CodeInput has a longest code of its own") }

    let result = CodeInput.classify(answer, digits: digits)
    let significant = answer.filter { $0 != UInt8(ascii: " ") }
    switch result {
    case .totp(let code):
        let bytes = Array(code.utf8)
        if bytes.count != digits || !bytes.allSatisfy(CodeShape.isDigit) { fail("totp \(code) for \(digits) digits") }
        if significant != bytes { fail("totp \(code) is not the answer without spaces") }
        if CodeInput.classify(bytes, digits: digits) != result { fail("totp normal form classifies differently") }
    case .recovery(let code) where isScratchCode(code):
        // An imported google-authenticator scratch code: 8 digits, only where codes are shorter.
        let bytes = Array(code.utf8)
        if digits == GoogleAuthenticatorFile.scratchCodeLength { fail("scratch code \(code) on an 8-digit account") }
        if significant != bytes { fail("scratch code \(code) is not the answer without spaces") }
        if CodeInput.classify(bytes, digits: digits) != result { fail("scratch code normal form classifies differently") }
    case .recovery(let code):
        let bytes = Array(code.utf8)
        if bytes.count != RecoveryCodes.length { fail("recovery code of \(bytes.count) characters") }
        if !bytes.allSatisfy({ RecoveryCodes.alphabet.contains(Character(Unicode.Scalar($0))) }) { fail("recovery alphabet") }
        if RecoveryCodes.normalize(code) != code { fail("recovery code is not normalized") }
        let expected = answer.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "-") }.map(uppercased)
        if expected != bytes { fail("recovery \(code) is not the answer normalized") }
        if CodeInput.classify(bytes, digits: digits) != result { fail("recovery normal form classifies differently") }
        if CodeInput.classify(Array(RecoveryCodes.display(code).utf8), digits: digits) != result { fail("printed form") }
    case .invalid(let error):
        switch error {
        case .empty: if !significant.isEmpty { fail("empty for \(answer)") }
        case .tooLong: if answer.count <= CodeInput.maxLength { fail("tooLong for \(answer.count) bytes") }
        case .notUTF8:
            if answer.count > CodeInput.maxLength || String(validating: answer, as: UTF8.self) != nil { fail("notUTF8") }
        case .controlCharacter:
            guard let text = String(validating: answer, as: UTF8.self),
                  text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { fail("controlCharacter") }
        case .wrongLength(let expected, let got):
            if expected == got { fail("wrongLength with equal lengths \(got)") }
        case .invalidCharacters: break
        }
        _ = error.description
    }

    // The module must not refuse, before asking the daemon, anything the daemon would accept.
    let accepted: Bool
    var scratch = false
    if case .recovery(let code) = result { scratch = isScratchCode(code) }
    switch result {
    case .totp, .recovery: accepted = true
    case .invalid: accepted = false
    }
    answer.withUnsafeBufferPointer { buffer in
        if accepted && !CodeShape.isPlausibleCode(buffer) { fail("the module refuses an answer the daemon accepts") }
        // try_first_pass and forward_pass take TOTP and recovery codes, not scratch codes
        // (pam_twofactor(8)): a scratch code is typed at the module's own prompt.
        if accepted && !scratch && !CodeShape.looksLikeCode(buffer, digits: digits) { fail("try_first_pass would not take a code the daemon accepts") }
    }
    for byte in answer {
        let module = CodeShape.recoveryCharacter(byte).map { Character(Unicode.Scalar($0)) }
        let daemon = RecoveryCodes.alphabet.contains(Character(Unicode.Scalar(uppercased(byte)))) ? Character(Unicode.Scalar(uppercased(byte))) : nil
        if module != daemon { fail("module and daemon recovery alphabets differ at byte \(byte)") }
    }

    // forward_pass: the answer as a password, then an accepted code in the form people type it.
    var typedForms: [[UInt8]] = []
    switch result {
    case .totp(let code): typedForms = [Array(code.utf8)]
    case .recovery(let code) where isScratchCode(code): break
    case .recovery(let code): typedForms = [Array(RecoveryCodes.display(code).utf8), Array(RecoveryCodes.display(code).lowercased().utf8)]
    case .invalid: break
    }
    for form in typedForms {
        let combined = answer + form
        let split = combined.withUnsafeBufferPointer { CodeShape.codeSplit($0, digits: digits) }
        if split != answer.count { fail("forward_pass splits \(combined) at \(split.map(String.init) ?? "nil"), not \(answer.count)") }
    }
    // Whatever forward_pass cuts off the end is a code the daemon accepts.
    if let split = answer.withUnsafeBufferPointer({ CodeShape.codeSplit($0, digits: digits) }) {
        if split < 0 || split > answer.count { fail("codeSplit \(split) outside the answer") }
        switch CodeInput.classify(Array(answer[split...]), digits: digits) {
        case .totp, .recovery: break
        case .invalid(let error): fail("forward_pass would send \(Array(answer[split...])), which the daemon refuses: \(error)")
        }
    }
    return 0
}
