"""Load and denial of service: one unprivileged user attacks the daemon's socket while root keeps
verifying (the PAM module's path: sshd and sudo ask as root). Each scenario runs against the real
twofactord on a private socket and store, with a throwaway attacker account:

  idle     many idle connections at once (10,000 in the long form), opened and held in waves;
  slow     clients that send a request one byte a second;
  vanish   clients that send half a frame and close, over and over;
  flood    one user's requests as fast as it can, pipelined on several connections.

While it runs, root asks `check` and `verify` (a wrong code, and once a right one) in a loop:
every answer must come within the PAM module's timeout (3 s) and none may be `busy` or an error;
the right code must be accepted. The daemon's memory (VmRSS, VmHWM of /proc/PID/status) is
sampled all along and must stay under MEMORY_BOUND. Connections beyond the daemon's limits are
answered `busy` or closed: that is the defence, not a failure. Afterwards the attacker must get
all 8 of its slots back (the daemon's connection count did not leak).

Short form (default): smaller counts, the whole file in about a minute. Long form:
TWOFACTOR_ATTACK_LONG=1. The figures are printed (run pytest with -s).
"""
import json
import os
import resource
import select
import signal
import socket
import statistics
import threading
import time

import pytest

from attack_kit import (  # noqa: F401  (fixtures are found by name)
    attack_daemon_factory, attack_make_user, enroll, remember_code,
)
import twofactor_wire as wire

LONG = os.environ.get("TWOFACTOR_ATTACK_LONG") == "1"

PAM_TIMEOUT = 3.0                  # the PAM module's default timeout (pam_twofactor.8)
MEMORY_BOUND = 256 * 1024 * 1024   # generous: the daemon idles at a few tens of MB
ROOT_PAUSE = 0.02                  # between root's rounds: logins, not a flood of their own

# Per scenario: how long it runs and how hard it pushes.
IDLE_CONNECTIONS = 10_000 if LONG else 1_000
IDLE_SECONDS = 40 if LONG else 10
IDLE_HOLD = 6 if LONG else 3       # each wave holds its connections this long, then reopens
SLOW_CLIENTS = 24 if LONG else 12  # more than one user's 8 slots
SLOW_SECONDS = 30 if LONG else 8   # longer than the read timeout (5 s)
VANISH_SECONDS = 30 if LONG else 8
FLOOD_CONNECTIONS = 8              # one user's slots
FLOOD_DEPTH = 16                   # requests written before reading their answers
FLOOD_SECONDS = 30 if LONG else 8

# The attacker may open this many descriptors (its child raises nothing: the parent, still root,
# lifts the limit for the fork and restores its own afterwards).
ATTACKER_FILES = IDLE_CONNECTIONS + 256


# --- measuring ----------------------------------------------------------------------------------

def root_request(path, op, fields, limit=30):
    """One request over a fresh connection as the PAM module makes it (DaemonLink.swift): a
    full listen backlog (EAGAIN) is retried every 10 ms. The limit is generous so that a slow
    answer is measured rather than cut off."""
    deadline = time.monotonic() + limit
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(wire.encode_frame(wire.OP[op], fields))
        return wire.read_response(sock)
    finally:
        sock.close()


class RootProbe(threading.Thread):
    """Root's logins: `check` then `verify` (wrong code; one right code half-way), each over a
    fresh connection like the PAM module's, timed from connect to answer."""

    def __init__(self, daemon, enrollment, right_code_at):
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.enrollment = enrollment
        self.right_code_at = right_code_at
        self.wrong = remember_code(enrollment.codes.wrong_code())
        self.times = []
        self.failures = []      # (op, elapsed, what)
        self.statuses = {}
        self.right_code_answer = None
        self.stop = threading.Event()

    def ask(self, op, fields):
        start = time.monotonic()
        try:
            answer = root_request(self.daemon_.socket, op, fields)
        except OSError as error:
            self.failures.append((op, time.monotonic() - start, repr(error)))
            return None
        elapsed = time.monotonic() - start
        self.times.append(elapsed)
        self.statuses[answer.status] = self.statuses.get(answer.status, 0) + 1
        return answer

    def run(self):
        user = self.enrollment.user
        while not self.stop.is_set():
            answer = self.ask("check", {"user": user})
            if answer is not None and answer.status != "enrolled":
                self.failures.append(("check", 0, repr(answer)))
            if self.right_code_answer is None and time.monotonic() >= self.right_code_at:
                code = remember_code(self.enrollment.codes.next_code())
                answer = self.ask("verify", {"user": user, "code": code, "service": "sshd"})
                self.right_code_answer = answer.status if answer is not None else "no answer"
            else:
                answer = self.ask("verify", {"user": user, "code": self.wrong, "service": "sshd"})
                if answer is not None and answer.status != "wrongCode":
                    self.failures.append(("verify", 0, repr(answer)))
            self.stop.wait(ROOT_PAUSE)


class MemorySampler(threading.Thread):
    """Samples the daemon's VmRSS and VmHWM (kB in /proc/PID/status) ten times a second."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.start_rss = self.read()["VmRSS"]
        self.peak_rss = self.start_rss
        self.hwm = 0
        self.stop = threading.Event()

    def read(self):
        values = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
        return values

    def run(self):
        while True:
            try:
                values = self.read()
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, values["VmRSS"])
            self.hwm = max(self.hwm, values["VmHWM"])
            if self.stop.wait(0.1):
                return


def run_attack(daemon, enrollment, attacker, body, seconds):
    """Runs body(deadline) -> dict as `attacker` in a forked child while root's probe and the
    memory sampler run; returns (the child's figures, probe, sampler)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(ATTACKER_FILES, soft)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
    deadline = time.time() + seconds

    def child(out):
        figures = body(deadline)
        os.write(out, json.dumps(figures).encode())

    try:
        pid, results = wire.fork_as(attacker.uid, attacker.gid, [], child)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    sampler = MemorySampler(daemon.process.pid)
    probe = RootProbe(daemon, enrollment, right_code_at=time.monotonic() + seconds / 2)
    try:
        sampler.start()
        probe.start()
        # The child stops itself at the deadline; a hang past it is killed (by its pid).
        ready, _, _ = select.select([results], [], [], seconds + 60)
        raw = wire.read_all(results) if ready else b""
    finally:
        try:
            waited, status = os.waitpid(pid, os.WNOHANG)
            if waited == 0:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
        finally:
            probe.stop.set()
            sampler.stop.set()
            probe.join(60)
            sampler.join(5)
    assert status == 0 and raw, f"the attacker failed (status {status})"
    return json.loads(raw), probe, sampler


def report(name, figures, probe, sampler):
    times = sorted(probe.times)
    p50 = statistics.median(times) if times else float("nan")
    worst = times[-1] if times else float("nan")
    mb = 1024 * 1024
    print(f"\n[load] {name}: {json.dumps(figures, sort_keys=True)}")
    print(f"[load] {name}: root answers {len(times)} (statuses {probe.statuses}), "
          f"p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms, right code {probe.right_code_answer}; "
          f"daemon RSS {sampler.start_rss / mb:.1f} MB at start, peak {sampler.peak_rss / mb:.1f} MB, "
          f"VmHWM {sampler.hwm / mb:.1f} MB")


def check_root_and_memory(probe, sampler):
    assert not probe.failures, f"root's requests failed: {probe.failures[:10]}"
    assert len(probe.times) >= 10, "root hardly got to ask"
    slow = [t for t in probe.times if t >= PAM_TIMEOUT]
    assert not slow, f"{len(slow)} of root's answers took the PAM timeout or longer: {max(slow):.2f} s"
    assert probe.right_code_answer == "accepted", probe.right_code_answer
    assert sampler.peak_rss < MEMORY_BOUND and sampler.hwm < MEMORY_BOUND, \
        f"daemon memory peak {sampler.peak_rss} (HWM {sampler.hwm}) bytes"


# --- the attacker's side (runs in the forked child, as the attacker) ----------------------------

def status_frame(user):
    return wire.encode_frame(wire.OP["status"], {"user": user})


def try_connect(path):
    """A connected socket, or None when the daemon's backlog is full (EAGAIN) or it refuses."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(path)
        return sock
    except OSError:
        sock.close()
        return None


def tally_held(socks, figures):
    """How the daemon treated held connections: still open, told busy, or closed."""
    for sock in socks:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            figures["still_open"] += 1
            continue
        except OSError:
            figures["closed_by_daemon"] += 1
            continue
        if not data:
            figures["closed_by_daemon"] += 1
        elif len(data) >= 6 and data[5] == 0x25:
            figures["told_busy"] += 1
        else:
            figures["other_answer"] += 1


def idle_attack(path, count, hold):
    def body(deadline):
        figures = {"waves": 0, "connects": 0, "connect_refused": 0, "most_held": 0,
                   "still_open": 0, "told_busy": 0, "closed_by_daemon": 0, "other_answer": 0}
        while time.time() < deadline:
            socks = []
            while len(socks) < count and time.time() < deadline:
                sock = try_connect(path)
                if sock is None:
                    figures["connect_refused"] += 1
                    time.sleep(0.001)  # the backlog is full: let the daemon drain it
                    continue
                socks.append(sock)
            figures["connects"] += len(socks)
            figures["most_held"] = max(figures["most_held"], len(socks))
            # The full hold also for the last wave: connections still in the listen backlog
            # would look open.
            time.sleep(hold)
            tally_held(socks, figures)
            for sock in socks:
                sock.close()
            figures["waves"] += 1
        return figures
    return body


def slow_attack(path, clients, user):
    frame = status_frame(user)

    def body(deadline):
        figures = {"clients": clients, "bytes_sent": 0, "disconnected": 0, "answers": 0,
                   "connect_refused": 0}
        conns = {}  # socket -> bytes of the frame sent so far

        def reopen():
            sock = try_connect(path)
            if sock is None:
                figures["connect_refused"] += 1
            else:
                conns[sock] = 0

        for _ in range(clients):
            reopen()
        while time.time() < deadline:
            for sock in list(conns):
                try:
                    data = sock.recv(4096)
                    # An answer (busy, or the status after the whole frame) or the daemon's close.
                    if data:
                        figures["answers"] += 1
                    figures["disconnected"] += 1
                    del conns[sock]
                    sock.close()
                    continue
                except BlockingIOError:
                    pass
                except OSError:
                    figures["disconnected"] += 1
                    del conns[sock]
                    sock.close()
                    continue
                sent = conns[sock] % len(frame)
                try:
                    sock.send(frame[sent:sent + 1])
                    conns[sock] += 1
                    figures["bytes_sent"] += 1
                except OSError:
                    figures["disconnected"] += 1
                    del conns[sock]
                    sock.close()
            while len(conns) < clients and time.time() < deadline:
                before = len(conns)
                reopen()
                if len(conns) == before:
                    break
            time.sleep(1)
        for sock in conns:
            sock.close()
        return figures
    return body


def vanish_attack(path, user):
    frame = status_frame(user)
    # Cut points: inside the length, right after it, half-way through the payload, one byte short.
    cuts = [2, 4, len(frame) // 2, len(frame) - 1]

    def body(deadline):
        figures = {"vanished": 0, "connect_refused": 0}
        index = 0
        while time.time() < deadline:
            sock = try_connect(path)
            if sock is None:
                figures["connect_refused"] += 1
                time.sleep(0.001)
                continue
            try:
                sock.send(frame[:cuts[index % len(cuts)]])
            except OSError:
                pass
            sock.close()
            index += 1
            figures["vanished"] += 1
        return figures
    return body


def flood_attack(path, connections, depth, user):
    batch = (status_frame(user) + wire.encode_frame(wire.OP["check"], {"user": user})) * (depth // 2)

    def body(deadline):
        figures = {"answered": 0, "busy": 0, "closed": 0, "statuses": {}}
        lock = threading.Lock()

        def worker():
            answered, counts, closed = 0, {}, 0
            while time.time() < deadline:
                try:
                    with wire.connect(path, timeout=10) as sock:
                        while time.time() < deadline:
                            sock.sendall(batch)
                            for _ in range(depth):
                                status = wire.read_response(sock).status
                                counts[status] = counts.get(status, 0) + 1
                                answered += 1
                            if counts.get("busy"):
                                break
                except (OSError, ValueError):
                    closed += 1
            with lock:
                figures["answered"] += answered
                figures["closed"] += closed
                for status, n in counts.items():
                    figures["statuses"][status] = figures["statuses"].get(status, 0) + n

        started = time.time()
        threads = [threading.Thread(target=worker) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        figures["busy"] = figures["statuses"].get("busy", 0)
        figures["per_second"] = round(figures["answered"] / max(0.001, time.time() - started))
        return figures
    return body


def slots_come_back(daemon, attacker, slots=8, within=15):
    """After an attack the attacker gets all its slots back (no connection is counted twice or
    forever): it opens `slots` connections at once and each one's `status` is answered `ok`.
    Retried for `within` seconds, as the daemon closes the attack's connections by itself."""
    frame = status_frame(attacker.name)

    def body(out):
        socks = [wire.connect(daemon.socket, timeout=10) for _ in range(slots)]
        statuses = []
        for sock in socks:
            sock.sendall(frame)
        for sock in socks:
            try:
                statuses.append(wire.read_response(sock).status)
            except (OSError, ValueError) as error:
                statuses.append(repr(error))
            sock.close()
        os.write(out, json.dumps(statuses).encode())

    deadline = time.time() + within
    while True:
        pid, results = wire.fork_as(attacker.uid, attacker.gid, [], body)
        statuses = json.loads(wire.read_all(results) or b"[]")
        os.waitpid(pid, 0)
        if statuses == ["ok"] * slots or time.time() > deadline:
            return statuses
        time.sleep(0.5)


# --- the scenarios ------------------------------------------------------------------------------

@pytest.fixture
def scene(attack_daemon_factory, attack_make_user):
    """A daemon, root's enrolled account and an enrolled attacker (so its own requests reach
    the store). Wrong codes never lock root's account out during the run."""
    daemon = attack_daemon_factory(max_failures=1_000_000)
    victim = attack_make_user("tfload")
    attacker = attack_make_user("tfatk")
    enrollment = enroll(daemon, victim.name)
    enroll(daemon, attacker.name)
    return daemon, enrollment, attacker


def test_idle_connections(scene):
    daemon, enrollment, attacker = scene
    figures, probe, sampler = run_attack(
        daemon, enrollment, attacker, idle_attack(daemon.socket, IDLE_CONNECTIONS, IDLE_HOLD),
        IDLE_SECONDS)
    report(f"idle connections ({IDLE_CONNECTIONS} per wave)", figures, probe, sampler)
    assert figures["most_held"] == IDLE_CONNECTIONS, figures
    # The daemon serves one user at most its 8 slots; the rest are told busy or closed.
    assert figures["still_open"] <= 8 * figures["waves"], figures
    check_root_and_memory(probe, sampler)
    assert slots_come_back(daemon, attacker) == ["ok"] * 8


def test_slow_clients(scene):
    daemon, enrollment, attacker = scene
    figures, probe, sampler = run_attack(
        daemon, enrollment, attacker, slow_attack(daemon.socket, SLOW_CLIENTS, attacker.name),
        SLOW_SECONDS)
    report(f"slow clients ({SLOW_CLIENTS}, a byte a second)", figures, probe, sampler)
    # Trickling does not extend the read timeout: every slow client was cut off at least once.
    assert figures["disconnected"] >= SLOW_CLIENTS, figures
    check_root_and_memory(probe, sampler)
    assert slots_come_back(daemon, attacker) == ["ok"] * 8


def test_clients_vanishing_mid_frame(scene):
    daemon, enrollment, attacker = scene
    figures, probe, sampler = run_attack(
        daemon, enrollment, attacker, vanish_attack(daemon.socket, attacker.name), VANISH_SECONDS)
    report("clients vanishing mid-frame", figures, probe, sampler)
    assert figures["vanished"] > 100, figures
    check_root_and_memory(probe, sampler)
    assert slots_come_back(daemon, attacker) == ["ok"] * 8


def test_one_user_flooding_requests(scene):
    daemon, enrollment, attacker = scene
    figures, probe, sampler = run_attack(
        daemon, enrollment, attacker,
        flood_attack(daemon.socket, FLOOD_CONNECTIONS, FLOOD_DEPTH, attacker.name), FLOOD_SECONDS)
    report(f"one user flooding ({FLOOD_CONNECTIONS} connections, {FLOOD_DEPTH} pipelined)",
           figures, probe, sampler)
    assert figures["answered"] > 100, figures
    check_root_and_memory(probe, sampler)
    assert slots_come_back(daemon, attacker) == ["ok"] * 8
