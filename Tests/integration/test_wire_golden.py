"""The Python test client against the same golden frames as the Swift codec."""
import os

import twofactor_wire as wire

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "fixtures", "wire-golden.txt")


def golden():
    vectors = {}
    with open(GOLDEN) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, hexframe = line.split()
            vectors[name] = bytes.fromhex(hexframe)
    assert len(vectors) == 9
    return vectors


def test_requests_encode_to_the_golden_frames():
    v = golden()
    assert wire.encode_frame(wire.OP["verify"], [("user", "alice"), ("code", "123456"),
                                                 ("service", "sshd")]) == v["verify_request"]
    assert wire.encode_frame(wire.OP["check"], {"user": "bob"}) == v["check_request"]
    # The PAM module's verify with every PAM item set (Tests/PAMTwoFactorTests checks the module).
    assert wire.encode_frame(wire.OP["verify"], [("user", "alice"), ("code", "123456"), ("service", "sshd"),
                                                 ("remoteHost", "192.0.2.7"), ("tty", "pts/0")]) \
        == v["verify_request_context"]
    assert wire.encode_frame(wire.OP["adminEnroll"], [("user", "bob"), ("secret", "JBSWY3DPEHPK3PXP"),
                                                      ("otpKind", "hotp"), ("counter", 5), ("importedCodes", True),
                                                      ("recoveryCode", "12345678")]) == v["admin_enroll_request"]


def test_responses_decode_from_the_golden_frames():
    v = golden()
    accepted = wire.decode_payload(v["accepted_recovery"][4:])
    assert accepted.status == "accepted"
    assert accepted["method"] == 2 and accepted["recoveryCodesLeft"] == 3
    locked = wire.decode_payload(v["locked_out"][4:])
    assert locked.status == "lockedOut" and locked["lockedUntil"] == 1_796_000_000
    wrong = wire.decode_payload(v["wrong_code_clock"][4:])
    assert wrong.status == "wrongCode" and wrong["clockOffsetMicros"] == -12_345_678
    listed = wire.decode_payload(v["list_nested"][4:])
    assert listed.status == "ok"
    assert listed["account"] == [{"user": "carol", "isEnrolled": True}]
    assert wire.decode_payload(v["empty_status_ok"][4:]).status == "ok"
