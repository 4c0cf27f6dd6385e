"""Requests fired at once from separate connections, with the moments they were sent and answered.

Each request has its own socket, connected before the start signal, so the daemon sees many
clients at the same moment. Moments are time.monotonic() in this process: `sent` just before the
frame is written, `answered` just after the whole answer was read."""
import os
import random
import threading
import time

import twofactor_wire as wire

LONG = os.environ.get("TWOFACTOR_ATTACK_LONG", "") not in ("", "0", "no")


def count(name, short, long):
    """A repetition count: the environment variable `name`, else the short or long default."""
    value = os.environ.get(name)
    return int(value) if value else (long if LONG else short)


# Every attempt is judged: no lockout gets in the way of counting accepts, and root has room for
# more than 100 connections at once (root's slots are four times max_connections).
ATTACK_CONFIG = {"max_failures": 1000000, "max_connections": 64}


class Shot:
    def __init__(self, label, op, fields, delay=0.0):
        self.label, self.op, self.fields, self.delay = label, op, fields, delay
        self.sent = self.answered = None
        self.status = None      # the answer's status name, or "error: ..." when none arrived
        self.response = None

    def __repr__(self):
        return f"Shot({self.label} {self.op} -> {self.status} sent={self.sent} answered={self.answered})"


def fire(socket_path, shots, timeout=30):
    """Connects one socket per shot, then releases them all at once (each after its own delay)
    and waits for every answer. Returns the shots, filled in."""
    barrier = threading.Barrier(len(shots))

    def run(shot):
        frame = wire.encode_frame(wire.OP[shot.op], shot.fields)
        try:
            sock = wire.connect(socket_path, timeout)
        except OSError as error:
            shot.status = f"error: connect: {error}"
            barrier.wait()
            return
        with sock:
            barrier.wait()
            if shot.delay:
                time.sleep(shot.delay)
            try:
                shot.sent = time.monotonic()
                sock.sendall(frame)
                shot.response = wire.read_response(sock)
                shot.answered = time.monotonic()
                shot.status = shot.response.status
            except (OSError, ValueError) as error:
                shot.status = f"error: {error}"

    threads = [threading.Thread(target=run, args=(shot,)) for shot in shots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    assert not any(thread.is_alive() for thread in threads), "a request never finished"
    return shots


def jitter(spread):
    return random.uniform(0, spread)
