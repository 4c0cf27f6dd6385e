// Networks for exempt_networks and the remote address they are matched against. Only a literal
// IPv4 or IPv6 address (inet_pton) is an address: a host name, an empty or a forged PAM_RHOST
// never parses, so it never matches an exemption.
import Foundation

public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    /// 4 or 16 bytes, host bits cleared.
    public let address: [UInt8]
    public let prefixLength: Int

    /// "192.0.2.0/24", "2001:db8::/32", or an address alone (a /32 or /128).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPNetwork.address(String(parts[0])) else { return nil }
        let bits = address.count * 8
        var prefix = bits
        if parts.count == 2 {
            guard let given = Int(parts[1]), given >= 0, given <= bits, parts[1].allSatisfy(\.isASCII),
                  parts[1].first != "+" else { return nil }
            prefix = given
        }
        self.prefixLength = prefix
        self.address = IPNetwork.masked(address, prefix)
    }

    /// The bytes of a literal address: 4 for IPv4 and IPv4-mapped IPv6 (::ffff:a.b.c.d, as a
    /// dual-stack sshd may report it), 16 for IPv6; nil for anything else.
    public static func address(_ text: String) -> [UInt8]? {
        guard !text.isEmpty, text.count <= 64, !text.contains("%") else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return Array(bytes[12..<16])
        }
        return bytes
    }

    public func contains(_ candidate: [UInt8]) -> Bool {
        candidate.count == address.count && IPNetwork.masked(candidate, prefixLength) == address
    }

    static func masked(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let keep = min(max(prefix - index * 8, 0), 8)
            return keep == 8 ? byte : byte & ~(UInt8(0xff) >> UInt8(keep))
        }
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = address.count == 4 ? AF_INET : AF_INET6
        let text = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        let shown = text == nil ? "?" : String(cString: buffer)
        return "\(shown)/\(prefixLength)"
    }
}
