"""A small NTP server of the tests' own on 127.0.0.1 (random free port), for the clock check.

It answers client requests (mode 3) with its clock set `skew` seconds ahead of the real one, so a
daemon asking it should measure an offset of -skew (the daemon reports local minus true time).
`behaviour` makes it answer badly, and can be changed while it runs:

  good          a proper stratum-2 answer
  kod           kiss-o'-death (stratum 0) with code `kiss_code` ("RATE" by default; "DENY"/"RSTR"
                tell the client to stop asking)
  stratum16     stratum 16 (unsynchronised)
  leap3         leap indicator 3 (clock unsynchronised)
  wrong-origin  an origin timestamp that does not echo the request's transmit timestamp
  wrong-mode    mode 3 instead of 4
  bad-version   version 2
  slow          waits `slow_seconds`, then answers as if the request had just arrived: to the
                client the round trip looks `slow_seconds` long (a congested path)
  wrong-port    answers from a different port (another socket)
  silent        never answers

Every request is recorded (arrival time and the transmit timestamp the client sent) so tests can
check that the daemon really asked.
"""
import socket
import struct
import threading
import time

NTP_UNIX_EPOCH = 2_208_988_800
BEHAVIOURS = {"good", "kod", "stratum16", "leap3", "wrong-origin", "wrong-mode", "bad-version",
              "slow", "wrong-port", "silent"}


def to_ntp(unix_time):
    """Unix seconds (float) -> 64-bit NTP timestamp (era 0)."""
    seconds = int(unix_time // 1)
    fraction = int((unix_time - seconds) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds + NTP_UNIX_EPOCH) & 0xFFFFFFFF) << 32 | fraction


def from_ntp(raw):
    return (raw >> 32) - NTP_UNIX_EPOCH + (raw & 0xFFFFFFFF) / (1 << 32)


class Request:
    def __init__(self, arrived, transmit_raw, source):
        self.arrived = arrived            # real unix time
        self.transmit_raw = transmit_raw  # the client's transmit timestamp, as sent
        self.source = source


class FakeNTPServer:
    def __init__(self, skew=0.0, behaviour="good", kiss_code="RATE", slow_seconds=1.3, stratum=2):
        self.skew = skew
        self.behaviour = behaviour
        self.kiss_code = kiss_code
        self.slow_seconds = slow_seconds
        self.stratum = stratum
        self.requests = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # for wrong-port answers
        self._other.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def set(self, **changes):
        with self._lock:
            for key, value in changes.items():
                if key == "behaviour":
                    assert value in BEHAVIOURS, value
                setattr(self, key, value)

    def request_count(self):
        with self._lock:
            return len(self.requests)

    def wait_for_requests(self, count, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.request_count() >= count:
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self._running = False
        self._thread.join(5)
        self._sock.close()
        self._other.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _serve(self):
        while self._running:
            try:
                data, source = self._sock.recvfrom(1024)
            except socket.timeout:
                continue
            except OSError:
                return
            arrived = time.time()
            if len(data) < 48 or data[0] & 0x7 != 3:
                continue  # only client requests
            transmit_raw = struct.unpack("!Q", data[40:48])[0]
            with self._lock:
                self.requests.append(Request(arrived, transmit_raw, source))
                behaviour, skew, kiss = self.behaviour, self.skew, self.kiss_code
                slow, stratum = self.slow_seconds, self.stratum
            if behaviour == "silent":
                continue
            receive = arrived + skew
            if behaviour == "slow":
                time.sleep(slow)
                receive = time.time() + skew
            leap, version, mode, origin, refid = 0, 4, 4, transmit_raw, b"LOCL"
            if behaviour == "kod":
                stratum, refid = 0, kiss.encode("ascii")[:4].ljust(4, b"\0")
            elif behaviour == "stratum16":
                stratum = 16
            elif behaviour == "leap3":
                leap = 3
            elif behaviour == "wrong-origin":
                origin = transmit_raw ^ 0x5A5A5A5A
            elif behaviour == "wrong-mode":
                mode = 3
            elif behaviour == "bad-version":
                version = 2
            transmit = time.time() + skew
            reply = struct.pack(
                "!BBbbII4sQQQQ",
                leap << 6 | version << 3 | mode, stratum, data[2] if data[2] < 128 else 6, -20,
                0, 1 << 10, refid,  # root delay 0, root dispersion ~16 ms
                to_ntp(receive - 16), origin, to_ntp(receive), to_ntp(transmit))
            out = self._other if behaviour == "wrong-port" else self._sock
            try:
                out.sendto(reply, source)
            except OSError:
                pass


def sntp_query(host, port, timeout=1.0):
    """One SNTP query of our own (to see whether a server such as chronyd answers yet).
    Returns (stratum, leap, offset seconds server minus local) or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        t1 = time.time()
        request = bytearray(48)
        request[0] = 4 << 3 | 3
        request[40:48] = struct.pack("!Q", to_ntp(t1))
        try:
            s.sendto(bytes(request), (host, port))
            data, _ = s.recvfrom(1024)
        except (socket.timeout, OSError):
            return None
        t4 = time.time()
        if len(data) < 48 or data[24:32] != request[40:48]:
            return None
        t2 = from_ntp(struct.unpack("!Q", data[32:40])[0])
        t3 = from_ntp(struct.unpack("!Q", data[40:48])[0])
        return data[1], data[0] >> 6, ((t2 - t1) + (t3 - t4)) / 2
