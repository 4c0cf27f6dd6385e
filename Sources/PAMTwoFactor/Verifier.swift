import CPAMShim

@_cdecl("twofactor_authenticate")
public func twofactorAuthenticate(_ pamh: OpaquePointer?, _ flags: Int32, _ argc: Int32,
                                  _ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> Int32 {
    var m = WireMessage(operation: .check)
    m.append(.tty, uint8: 1)
    return m.encodedFrame().count > 0 ? PAM_IGNORE : PAM_AUTH_ERR
}
