"""A small Python client for twofactord's wire protocol v1, for the integration tests.

docs/PROTOCOL.md is the specification; test_wire_golden.py checks this module against the same
golden frames (Tests/fixtures/wire-golden.txt) as the Swift codec, so the tests and the product
speak one protocol. It can also send raw bytes (malformed frames) and act as another uid.
"""
import os
import socket
import struct

VERSION = 1
MAX_RESPONSE = 1024 * 1024

OP = {
    "check": 0x01, "verify": 0x02,
    "enrollBegin": 0x10, "enrollConfirm": 0x11, "enrollCancel": 0x12,
    "regenerateRecoveryCodes": 0x13, "disable": 0x14, "status": 0x15,
    "listAccounts": 0x20, "resetAccount": 0x21, "unlockAccount": 0x22,
    "clockStatus": 0x30, "adminEnroll": 0x23, "health": 0x31,
}
STATUS = {
    0x00: "ok", 0x01: "accepted", 0x02: "enrolled", 0x03: "notEnrolled", 0x04: "exempt",
    0x10: "wrongCode", 0x11: "codeReused", 0x12: "lockedOut", 0x13: "alreadyEnrolled",
    0x14: "noPendingEnrollment", 0x15: "codeRequired",
    0x20: "permissionDenied", 0x21: "badRequest", 0x22: "unsupportedVersion",
    0x23: "unknownOperation", 0x24: "internalError", 0x25: "busy",
}
# name -> (tag, type); type is one of text, u8, bool, u32, u64, i64, bytes, nested
TAG = {
    "user": (0x01, "text"), "code": (0x02, "text"), "service": (0x03, "text"),
    "remoteHost": (0x04, "text"), "tty": (0x05, "text"),
    "method": (0x10, "u8"), "recoveryCodesLeft": (0x11, "u32"), "lockedUntil": (0x12, "u64"),
    "message": (0x13, "text"), "clockOffsetMicros": (0x14, "i64"),
    "secret": (0x20, "text"), "uri": (0x21, "text"), "recoveryCode": (0x22, "text"),
    "digits": (0x23, "u8"), "period": (0x24, "u32"), "algorithm": (0x25, "text"),
    "issuer": (0x26, "text"),
    "enrolledSince": (0x30, "u64"), "lastUsed": (0x31, "u64"), "failures": (0x33, "u32"),
    "pending": (0x34, "bool"), "isEnrolled": (0x35, "bool"), "account": (0x36, "nested"),
    "driftSteps": (0x37, "i64"),
    "clockState": (0x40, "text"), "clockDelayMicros": (0x42, "i64"), "clockServer": (0x43, "text"),
    "clockStratum": (0x44, "u8"), "clockMeasuredAt": (0x45, "u64"),
    "kernelSynchronized": (0x46, "bool"), "kernelErrorMicros": (0x47, "i64"),
    "clockRemedy": (0x48, "text"), "clockCompensation": (0x49, "bool"),
    "clockFalseticker": (0x4A, "text"), "clockCorrectionMicros": (0x4B, "i64"),
    "otpKind": (0x27, "text"), "counter": (0x28, "u64"), "window": (0x29, "u32"),
    "lastStep": (0x2A, "i64"), "replace": (0x2B, "bool"), "importedCodes": (0x2C, "bool"),
    "rule": (0x50, "text"), "ruleDetail": (0x51, "text"), "required": (0x52, "bool"),
    "phase": (0x53, "u8"), "qrText": (0x54, "text"),
    "storeKind": (0x58, "text"), "storeLocation": (0x59, "text"), "storeReachable": (0x5A, "bool"),
    "storeLatencyMicros": (0x5B, "i64"), "storeLastError": (0x5C, "text"),
    "storeLastErrorAt": (0x5D, "u64"), "storeErrors": (0x5E, "u32"), "nodeName": (0x5F, "text"),
    "listAfter": (0x60, "text"), "listMore": (0x61, "bool"),
}
TAG_NAME = {tag: (name, kind) for name, (tag, kind) in TAG.items()}
REPEATED = {"recoveryCode", "account", "clockFalseticker"}
METHOD = {1: "totp", 2: "recovery", 3: "hotp"}


def _encode_value(kind, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if kind in ("text", "bytes"):
        return value.encode("utf-8")
    if kind in ("u8", "bool"):
        return bytes([int(value)])
    if kind == "u32":
        return struct.pack(">I", value)
    if kind == "u64":
        return struct.pack(">Q", value)
    if kind == "i64":
        return struct.pack(">q", value)
    if kind == "nested":
        return encode_fields(value)
    raise ValueError(kind)


def encode_fields(fields):
    """fields: dict or list of (name, value); a name may repeat in a list; bytes pass through."""
    items = fields.items() if isinstance(fields, dict) else fields
    out = b""
    for name, value in items:
        tag, kind = TAG[name] if isinstance(name, str) else (name, "bytes")
        raw = _encode_value(kind, value)
        out += struct.pack(">BH", tag, len(raw)) + raw
    return out


def encode_frame(code, fields=(), version=VERSION):
    payload = bytes([version, code]) + encode_fields(fields)
    return struct.pack(">I", len(payload)) + payload


def decode_fields(raw):
    result = {}
    index = 0
    while index < len(raw):
        if len(raw) - index < 3:
            raise ValueError("malformed field header")
        tag, length = struct.unpack(">BH", raw[index:index + 3])
        index += 3
        value = raw[index:index + length]
        if len(value) != length:
            raise ValueError("field runs past the payload")
        index += length
        name, kind = TAG_NAME.get(tag, (tag, "bytes"))
        if kind == "text":
            value = value.decode("utf-8", "replace")
        elif kind in ("u8",):
            value = value[0]
        elif kind == "bool":
            value = value[0] != 0
        elif kind == "u32":
            value = struct.unpack(">I", value)[0]
        elif kind == "u64":
            value = struct.unpack(">Q", value)[0]
        elif kind == "i64":
            value = struct.unpack(">q", value)[0]
        elif kind == "nested":
            value = decode_fields(value)
        if name in REPEATED:
            result.setdefault(name, []).append(value)
        else:
            result.setdefault(name, value)
    return result


class Response(dict):
    """Decoded response: the fields as a dict, plus .status (a name) and .version."""

    def __init__(self, version, code, fields):
        super().__init__(fields)
        self.version = version
        self.code = code
        self.status = STATUS.get(code, hex(code))

    def __repr__(self):
        return f"Response({self.status}, {dict(self)})"


def decode_payload(payload):
    if len(payload) < 2:
        raise ValueError("payload shorter than 2 bytes")
    return Response(payload[0], payload[1], decode_fields(payload[2:]))


def _recv_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("daemon closed the connection")
        data += chunk
    return data


def read_response(sock):
    length = struct.unpack(">I", _recv_exactly(sock, 4))[0]
    if not 2 <= length <= MAX_RESPONSE:
        raise ValueError(f"bad response length {length}")
    return decode_payload(_recv_exactly(sock, length))


def connect(socket_path, timeout=10):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(socket_path)
    return sock


def request(socket_path, op, fields=(), timeout=10, as_uid=None, as_gid=None, groups=()):
    """Sends one request and returns the Response. With as_uid the request is made from a
    forked child that has dropped to that uid/gid, so SO_PEERCRED sees that identity."""
    code = OP[op] if isinstance(op, str) else op
    frame = encode_frame(code, fields)
    if as_uid is None:
        with connect(socket_path, timeout) as sock:
            sock.sendall(frame)
            return read_response(sock)
    return _as_other_uid(socket_path, frame, timeout, as_uid, as_gid, groups)


def fork_as(uid, gid, groups, body):
    """Runs body(write_fd) in a forked child that has dropped to uid/gid/groups for good, so
    SO_PEERCRED sees that identity. Returns (child pid, read end of the pipe body writes to);
    the caller reads until EOF and reaps the child with os.waitpid."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgroups(list(groups))
            os.setgid(gid if gid is not None else uid)
            os.setuid(uid)
            body(write_end)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def read_all(fd):
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data


def _as_other_uid(socket_path, frame, timeout, uid, gid, groups):
    def ask(out):
        with connect(socket_path, timeout) as sock:
            sock.sendall(frame)
            length = struct.unpack(">I", _recv_exactly(sock, 4))[0]
            os.write(out, _recv_exactly(sock, length))

    pid, results = fork_as(uid, gid, groups, ask)
    payload = read_all(results)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise ConnectionError(f"request as uid {uid} failed (child status {status})")
    return decode_payload(payload)
