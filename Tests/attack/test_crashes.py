"""Crashes and a full disk (issue 12, "Crashes"): twofactord killed with SIGKILL at random moments
inside a stream of verifies, enrollments, regenerations and disables, and run on a full
filesystem. After every kill, with the daemon stopped, the store passes `PRAGMA
integrity_check` and holds no half-made enrollment; after the restart no code whose acceptance
was answered before the kill is accepted again, and every account whose last request was
answered is exactly as those answers said.

TWOFACTOR_ATTACK_KILLS sets the number of kills (default 15; 200 in the long form); a quarter as
many more kill the daemon while it starts on a new store."""
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter

import pytest

import twofactor_wire as wire
from race_kit import ATTACK_CONFIG, LONG, count
from figures import record
from helpers import Daemon, totp, unique_name, wait_until_group_gone

KILLS = count("TWOFACTOR_ATTACK_KILLS", 15, 200)
WORKERS = 6          # one account each, all at once
PERIOD = 30


def step_now():
    return int(time.time()) // PERIOD


class NotSent(Exception):
    """The daemon could not be reached: the request never left."""


class NoAnswer(Exception):
    """The request left but no answer came back: the daemon may or may not have done it."""


def ask(socket_path, op, fields):
    try:
        sock = wire.connect(socket_path, timeout=10)
    except OSError as error:
        raise NotSent(error) from error
    with sock:
        try:
            sock.sendall(wire.encode_frame(wire.OP[op], fields))
            return wire.read_response(sock)
        except (OSError, ValueError) as error:
            raise NoAnswer(error) from error


class Account:
    """What the answers received so far say about one account (a worker's model of it)."""

    def __init__(self):
        self.name = unique_name("tfk")
        self.secret = None           # of the confirmed enrollment (or of the pending one)
        self.enrolled = False
        self.recovery = []           # unused recovery codes, as answered
        self.last_step = None
        self.certain = True          # False once a request went unanswered (the kill)
        self.accepted = []           # (kind, code, secret, step): accepted, answer received
        self.problems = []

    def expect(self, what, answer, wanted):
        if answer.status != wanted:
            self.problems.append(f"{self.name}: {what}: {answer!r}, expected {wanted}")
            return False
        return True


def worker(daemon, account, stop, rng):
    """Requests one after the other until `stop` or a request goes unanswered."""
    sock = daemon.socket
    try:
        while not stop.is_set():
            # Idle now and then, so that some accounts have no request in flight at the kill and
            # their state must survive exactly.
            time.sleep(rng.uniform(0, 0.03))
            if not account.enrolled:
                begun = ask(sock, "enrollBegin", {"user": account.name})
                if not account.expect("enrollBegin", begun, "ok"):
                    return
                account.secret = begun["secret"]
                step = step_now()
                code = totp(account.secret, at=step * PERIOD)
                confirmed = ask(sock, "enrollConfirm", {"user": account.name, "code": code})
                if not account.expect("enrollConfirm", confirmed, "ok"):
                    return
                account.enrolled, account.recovery = True, list(confirmed["recoveryCode"])
                account.last_step = step
                account.accepted.append(("totp", code, account.secret, step))
                continue
            choice = rng.random()
            if choice < 0.35 and account.recovery:
                code = account.recovery[0]
                answer = ask(sock, "verify", {"user": account.name, "code": code})
                if not account.expect("verify recovery", answer, "accepted"):
                    return
                account.recovery.pop(0)
                account.accepted.append(("recovery", code, account.secret, None))
            elif choice < 0.50 and account.last_step < step_now() + 1:
                step = max(step_now(), account.last_step + 1)
                code = totp(account.secret, at=step * PERIOD)
                answer = ask(sock, "verify", {"user": account.name, "code": code})
                if not account.expect("verify totp", answer, "accepted"):
                    return
                account.last_step = step
                account.accepted.append(("totp", code, account.secret, step))
            elif choice < 0.65 and account.accepted:
                kind, code, secret, _ = rng.choice(account.accepted)
                if kind == "totp" and secret != account.secret:
                    continue
                answer = ask(sock, "verify", {"user": account.name, "code": code})
                if answer.status == "accepted":
                    account.problems.append(f"{account.name}: replay of a used {kind} code accepted")
                    return
            elif choice < 0.85:
                answer = ask(sock, "regenerateRecoveryCodes", {"user": account.name})
                if not account.expect("regenerate", answer, "ok"):
                    return
                account.recovery = list(answer["recoveryCode"])
            else:
                answer = ask(sock, "disable", {"user": account.name})
                if not account.expect("disable", answer, "ok"):
                    return
                account.enrolled, account.recovery, account.last_step = False, [], None
    except NotSent:
        return
    except NoAnswer:
        account.certain = False


def check_store(db_path, may_be_new=False):
    """With the daemon stopped: the store is intact and holds no half-made enrollment. With
    `may_be_new`, a store killed before its migration ran (no tables at all) passes too.
    The checks run on a copy of the database and its journals (without the -shm index, which
    SQLite rebuilds), so they neither change the store nor need to write to it."""
    copy_dir = tempfile.mkdtemp(prefix="tfcheck-", dir="/tmp")
    copy = os.path.join(copy_dir, "twofactor.db")
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(db_path + suffix):
            shutil.copyfile(db_path + suffix, copy + suffix)
    connection = sqlite3.connect(copy)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if may_be_new and not tables & {"account", "recovery_code"}:
            return 0
        assert {"account", "recovery_code"} <= tables, f"a half-migrated store: {tables}"
        without_codes = connection.execute(
            "SELECT name, (SELECT COUNT(*) FROM recovery_code WHERE account = name) FROM account "
            "WHERE secret IS NOT NULL AND (SELECT COUNT(*) FROM recovery_code WHERE account = name) != 8").fetchall()
        assert without_codes == [], f"confirmed accounts without their 8 recovery codes: {without_codes}"
        orphans = connection.execute(
            "SELECT DISTINCT account FROM recovery_code WHERE account NOT IN "
            "(SELECT name FROM account WHERE secret IS NOT NULL)").fetchall()
        assert orphans == [], f"recovery codes without a confirmed account: {orphans}"
        return connection.execute("SELECT COUNT(*) FROM account").fetchone()[0]
    finally:
        connection.close()
        shutil.rmtree(copy_dir, ignore_errors=True)


def check_after_restart(daemon, account, replay_sample):
    """Codes accepted before the kill stay used; a certain account is as its answers said."""
    meaningful = 0
    for kind, code, secret, step in replay_sample:
        if kind == "totp" and secret != account.secret:
            continue    # that enrollment is gone; its codes mean nothing now
        answer = daemon.request("verify", {"user": account.name, "code": code})
        assert answer.status != "accepted", f"{account.name}: a {kind} code accepted before the kill was accepted again"
        meaningful += answer.status == "codeReused"
    if account.certain:
        status = daemon.request("status", {"user": account.name})
        assert status.status == "ok", status
        assert status["isEnrolled"] == account.enrolled, (account.name, status, account.enrolled)
        if account.enrolled:
            assert status["recoveryCodesLeft"] == len(account.recovery), (account.name, status, account.recovery)
    else:
        # The unanswered request may or may not have happened: start this account afresh.
        answer = daemon.request("resetAccount", {"user": account.name})
        assert answer.status in ("ok", "notEnrolled"), answer
        account.enrolled, account.recovery, account.last_step, account.secret = False, [], None, None
        account.accepted, account.certain = [], True
    return meaningful


def test_kill_9_inside_a_stream_of_requests_loses_nothing_and_half_makes_nothing(race_daemon):
    daemon = race_daemon
    db_path = os.path.join(daemon.state_dir, "twofactor.db")
    rng = random.Random(os.environ.get("TWOFACTOR_ATTACK_SEED") or None)
    accounts = [Account() for _ in range(WORKERS)]
    began = time.monotonic()
    requests_answered = replays = meaningful_replays = unanswered = exact = 0
    for kill in range(KILLS):
        stop = threading.Event()
        before = {a.name: len(a.accepted) for a in accounts}
        threads = [threading.Thread(target=worker, args=(daemon, a, stop, random.Random(rng.random())))
                   for a in accounts]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.02, 0.8))
        daemon.stop(sig=signal.SIGKILL)
        stop.set()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        problems = [p for a in accounts for p in a.problems]
        assert not problems, f"kill {kill}: {problems}"
        unanswered += sum(not a.certain for a in accounts)
        exact += sum(a.certain for a in accounts)
        requests_answered += sum(len(a.accepted) - before[a.name] for a in accounts)

        check_store(db_path)
        daemon.start()
        for account in accounts:
            fresh = account.accepted[before[account.name]:]
            older = account.accepted[:before[account.name]]
            sample = fresh + rng.sample(older, min(5, len(older)))
            replays += len(sample)
            meaningful_replays += check_after_restart(daemon, account, sample)
    elapsed = time.monotonic() - began
    record(f"crashes: {KILLS} kill -9 inside the request stream ({WORKERS} clients), {requests_answered} codes "
           f"accepted before kills, {unanswered} requests cut off, {exact} accounts checked exact, {replays} replays after restart "
           f"({meaningful_replays} refused as reused), integrity ok every time ({elapsed:.1f} s)")
    assert requests_answered > 0


def test_kill_9_while_starting_on_a_new_store_leaves_a_usable_store(race_daemon_factory):
    """Killed at random moments of its start-up (the key file and the store being created, the
    store migrated; start-up takes about 50 ms), the daemon leaves a key and a store that pass
    the checks and work after the next start."""
    daemon = race_daemon_factory()
    db_path = os.path.join(daemon.state_dir, "twofactor.db")
    rng = random.Random(os.environ.get("TWOFACTOR_ATTACK_SEED") or None)
    kills = max(5, KILLS // 4)
    began = time.monotonic()
    new_stores = 0
    for _ in range(kills):
        daemon.stop()
        for leftover in os.listdir(daemon.state_dir):
            os.unlink(os.path.join(daemon.state_dir, leftover))
        os.unlink(daemon.key_file)
        starting = subprocess.Popen([daemon_binary(), "--config", daemon.config_path],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0, 0.06))
        starting.kill()
        starting.wait()
        if os.path.exists(db_path):
            new_stores += check_store(db_path, may_be_new=True) == 0
        daemon.start()
        enrollment = daemon.enroll(unique_name("tfs"))
        assert daemon.request("verify", {"user": enrollment.user, "code": enrollment.code(1)}).status == "accepted"
    record(f"crashes: {kills} kill -9 during start-up on a new store ({new_stores} before any table existed), "
           "key and store usable after each "
           f"({time.monotonic() - began:.1f} s)")


# Every syscall that changes a file; the crash-point test kills the daemon at each call of each.
WRITING_SYSCALLS = ("write", "pwrite64", "fsync", "fdatasync", "fchmod", "ftruncate", "unlink",
                    "unlinkat", "link", "linkat", "rename", "renameat", "renameat2")


def start_under_strace(daemon, *strace_options, trace="/dev/null"):
    """The daemon started under strace in a session of its own: (process, whether it listened).
    Waits until the daemon listens or strace exits (the daemon was killed)."""
    process = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, *strace_options,
                                daemon_binary(), "--config", daemon.config_path],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while time.time() < deadline and process.poll() is None:
        try:
            with wire.connect(daemon.socket, timeout=1):
                return process, True
        except OSError:
            time.sleep(0.01)
    return process, False


def stop_session(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    wait_until_group_gone(process.pid)


def fresh_start_files(daemon):
    for leftover in os.listdir(daemon.state_dir):
        os.unlink(os.path.join(daemon.state_dir, leftover))
    os.unlink(daemon.key_file)


def test_kill_9_at_every_file_write_of_a_first_start_leaves_a_daemon_that_starts(race_daemon_factory):
    """Crash points, exhaustively: the first start-up on a new key and store is traced once to
    count its file-changing syscalls; then, for each syscall and each of its calls, the daemon
    starts afresh under strace and is killed (SIGKILL, injected) when it makes that call. After
    each kill the store passes the checks, and the next start works: it listens, enrolls and
    verifies. The short form tries a sample of the crash points."""
    daemon = race_daemon_factory()
    daemon.stop()
    fresh_start_files(daemon)
    trace = os.path.join(daemon.dir, "startup.trace")
    process, listened = start_under_strace(daemon, "-e", "trace=" + ",".join(WRITING_SYSCALLS), trace=trace)
    stop_session(process)
    assert listened, daemon.log()
    calls = Counter()
    with open(trace) as f:
        for line in f:
            name = line.split(None, 1)[1].split("(", 1)[0] if " " in line else ""
            calls[name] += name in WRITING_SYSCALLS
    points = [(name, n) for name, total in sorted(calls.items()) for n in range(1, total + 1)]
    assert points, "no file-changing syscalls seen at start-up"
    rng = random.Random(os.environ.get("TWOFACTOR_ATTACK_SEED") or None)
    chosen = points if LONG else sorted(rng.sample(points, min(len(points), 12)) +
                                        [p for p in points if p[0] in ("write", "fsync")][:4])
    began = time.monotonic()
    killed = 0
    for name, n in dict.fromkeys(chosen):
        fresh_start_files(daemon)
        process, listened = start_under_strace(daemon, "-e", f"trace={name}",
                                               "-e", f"inject={name}:signal=KILL:when={n}")
        stop_session(process)
        killed += not listened
        db_path = os.path.join(daemon.state_dir, "twofactor.db")
        if os.path.exists(db_path):
            check_store(db_path, may_be_new=True)
        try:
            daemon.start()
        except RuntimeError as error:
            raise AssertionError(f"after a kill at call {n} of {name} at start-up the daemon does not start: {error}")
        enrollment = daemon.enroll(unique_name("tfp"))
        assert daemon.request("verify", {"user": enrollment.user, "code": enrollment.code(1)}).status == "accepted"
        daemon.stop()
    record(f"crashes: {len(dict.fromkeys(chosen))} of {len(points)} crash points of a first start-up tried "
           f"(SIGKILL at the call; {killed} killed before listening); the next start worked after each "
           f"({time.monotonic() - began:.1f} s)")


def daemon_binary():
    import helpers
    return helpers.TWOFACTORD


# --- a full disk ---------------------------------------------------------------------------------

@pytest.fixture
def small_tmpfs():
    """A 2 MiB tmpfs of our own, unmounted afterwards."""
    mountpoint = tempfile.mkdtemp(prefix="tfdisk-", dir="/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", mountpoint],
                   check=True, capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        os.rmdir(mountpoint)


def fill(directory, name="filler"):
    """Writes a file until the filesystem refuses another byte. Returns its path."""
    path = os.path.join(directory, name)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return path


def test_a_full_disk_answers_errors_never_accepts_and_loses_nothing(tmp_path, small_tmpfs):
    daemon = Daemon(tmp_path, {**ATTACK_CONFIG, "state_directory": os.path.join(small_tmpfs, "state")})
    try:
        daemon.start()
        used = daemon.enroll(unique_name("tfd"))
        used_totp, used_recovery = used.code(1), used.recovery_codes[0]
        assert daemon.request("verify", {"user": used.user, "code": used_totp}).status == "accepted"
        assert daemon.request("verify", {"user": used.user, "code": used_recovery}).status == "accepted"
        other = daemon.enroll(unique_name("tfd"))
        fresh_totp = other.code(1)

        filler = fill(small_tmpfs)
        on_full_disk = {
            "fresh TOTP": daemon.request("verify", {"user": other.user, "code": fresh_totp}),
            "recovery code": daemon.request("verify", {"user": other.user, "code": other.recovery_codes[0]}),
            "used TOTP": daemon.request("verify", {"user": used.user, "code": used_totp}),
            "used recovery": daemon.request("verify", {"user": used.user, "code": used_recovery}),
            "regenerate": daemon.request("regenerateRecoveryCodes", {"user": other.user}),
            "enrollBegin": daemon.request("enrollBegin", {"user": unique_name("tfd")}),
        }
        for what, answer in on_full_disk.items():
            assert answer.status == "internalError", (what, answer, daemon.log()[-2000:])
        assert daemon.process.poll() is None, "the daemon died on a full disk"

        # A restart on the full disk (stopping frees the WAL, so fill again): the daemon refuses
        # to start or answers errors, and never accepts.
        daemon.stop()
        more = fill(small_tmpfs, "filler2")
        try:
            daemon.start()
        except RuntimeError:
            restarted = "refused to start"
        else:
            answer = daemon.request("verify", {"user": other.user, "code": other.recovery_codes[1]})
            assert answer.status == "internalError", answer
            restarted = "started and answered internalError"
            daemon.stop()
        os.unlink(more)
        os.unlink(filler)
        daemon.start()
        assert daemon.request("verify", {"user": used.user, "code": used_totp}).status == "codeReused"
        assert daemon.request("verify", {"user": used.user, "code": used_recovery}).status == "codeReused"
        assert daemon.request("verify", {"user": other.user, "code": fresh_totp}).status == "accepted"
        assert daemon.request("verify", {"user": other.user, "code": other.recovery_codes[0]}).status == "accepted"
        assert daemon.request("verify", {"user": other.user, "code": other.recovery_codes[1]}).status == "accepted"
        daemon.enroll(unique_name("tfd"))

        daemon.stop()
        assert check_store(os.path.join(daemon.config["state_directory"], "twofactor.db")) == 3
        daemon.start()
        for user, code in ((used.user, used_totp), (used.user, used_recovery),
                           (other.user, fresh_totp), (other.user, other.recovery_codes[0])):
            assert daemon.request("verify", {"user": user, "code": code}).status == "codeReused"
        record(f"full disk: 6 requests on a full 2 MiB tmpfs answered internalError; a restart on it {restarted}; "
               "nothing lost after freeing it")
    finally:
        daemon.destroy()
