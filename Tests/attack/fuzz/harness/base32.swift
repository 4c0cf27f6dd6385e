// libFuzzer target "base32": Base32.decode / encode / grouped (Sources/TwoFactorCore/Base32.swift).
//
// Properties checked on every input:
//  - decode(text) of the input as text either returns bytes or throws a Base32Error; an
//    invalidCharacter error names the character at the position it gives (counted from 1), an
//    empty error means the text has no base32 characters at all.
//  - on success, re-encoding and decoding again gives the same bytes, and the byte count is
//    exactly what the number of base32 characters carries (5 bits each, whole bytes).
//  - the input as bytes: encode (with and without padding, lowercased, grouped for people)
//    always decodes back to exactly those bytes.
import TwoFactorCore

@inline(never)
func fail(_ message: String) -> Never {
    fatalError("base32 property violated: \(message)")
}

func decoded(_ text: String) -> Result<[UInt8], Base32Error> {
    do throws(Base32Error) { return .success(try Base32.decode(text)) } catch { return .failure(error) }
}

func isBase32Letter(_ character: Character) -> Bool {
    guard let ascii = character.asciiValue else { return false }
    return (65...90).contains(ascii) || (97...122).contains(ascii) || (50...55).contains(ascii)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))

    // 1. Decode the input as text (what a person pastes).
    let text = String(decoding: input, as: UTF8.self)
    switch decoded(text) {
    case .success(let bytes):
        let significant = text.filter(isBase32Letter).count
        if bytes.count != significant * 5 / 8 { fail("\(bytes.count) bytes from \(significant) characters") }
        if bytes.isEmpty { fail("success with no bytes") }
        if decoded(Base32.encode(bytes)) != .success(bytes) { fail("re-encoding does not decode to the same bytes") }
    case .failure(.invalidCharacter(let character, let position)):
        let characters = Array(text)
        guard position >= 1, position <= characters.count else { fail("position \(position) outside 1...\(characters.count)") }
        if characters[position - 1] != character { fail("character at \(position) is not the one named") }
        _ = Base32Error.invalidCharacter(character, position: position).description
    case .failure(.empty):
        if text.contains(where: isBase32Letter) { fail("empty, but the text has base32 characters") }
    case .failure(.invalidLength):
        let significant = text.filter(isBase32Letter).count
        if ![1, 3, 6].contains(significant % 8) { fail("invalidLength for \(significant) characters") }
    }

    // 2. The input as bytes: every encoding we produce decodes back exactly.
    if !input.isEmpty {
        let plain = Base32.encode(input)
        if plain.count != (input.count * 8 + 4) / 5 { fail("encoded length \(plain.count) for \(input.count) bytes") }
        if !plain.allSatisfy(isBase32Letter) || plain.contains(where: { $0.isLowercase }) { fail("encode output alphabet") }
        for form in [plain, Base32.encode(input, padding: true), plain.lowercased(), Base32.grouped(input)] {
            if decoded(form) != .success(input) { fail("round trip of \(input.count) bytes via \(form)") }
        }
    }
    return 0
}
