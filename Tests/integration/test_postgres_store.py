"""twofactord with `store = postgresql` (docs/POSTGRESQL.md), through the real binary, against a
private PostgreSQL cluster (pg_kit.py): single use across daemons that share one database, the
database going away and coming back, connections killed mid-transaction, TLS verification, and
the password kept out of every output.
"""
import os
import signal
import subprocess
import threading
import time

import pytest

from helpers import TWOFACTORD, Daemon, fresh_code, unique_name
from pg_kit import pg_cluster, pg_cluster_tls  # noqa: F401  (fixtures)

# The module's default timeout= (Sources/PAMTwoFactor/Options.swift): a verify must be answered
# within it, or the module gives up on the daemon anyway.
MODULE_TIMEOUT = 3


@pytest.fixture
def pg_daemons(tmp_path_factory, pg_cluster):  # noqa: F811
    """pg_daemons(database, **overrides) -> a started Daemon whose store is `database`."""
    made = []

    def start(database, **overrides):
        d = Daemon(tmp_path_factory.mktemp("twofactord"), {**pg_cluster.daemon_config(database), **overrides})
        made.append(d)
        return d.start(timeout=60)

    try:
        yield start
    finally:
        for d in made:
            d.destroy()


def shared_key(first, second):
    """Every daemon of a fleet uses the same key file: copy the first's to the second's path."""
    with open(first.key_file, "rb") as f:
        key = f.read()
    second.stop()
    with open(second.key_file, "wb") as f:
        f.write(key)
    os.chmod(second.key_file, 0o600)
    second.start(timeout=60)


def test_enroll_verify_and_replay_survive_a_restart(pg_cluster, pg_daemons):  # noqa: F811
    db = pg_cluster.create_database()
    d = pg_daemons(db)
    user = unique_name("tfpg")
    e = d.enroll(user)
    code = e.code(1)
    assert d.request("verify", {"user": user, "code": code}).status == "accepted"
    assert d.request("verify", {"user": user, "code": code}).status == "codeReused"
    d.restart()
    assert d.request("verify", {"user": user, "code": code}).status == "codeReused"
    assert d.request("status", {"user": user})["isEnrolled"]
    # The rows are in PostgreSQL, and the secret is sealed there too.
    rows = pg_cluster.psql(f"SELECT name, last_step IS NOT NULL, length(secret) FROM account WHERE name = '{user}'", db)
    assert rows and rows[0].startswith(f"{user}|t|"), rows
    start_lines = [line for line in d.log().splitlines() if line.startswith("start ")]
    assert start_lines and f"postgresql://twofactord@127.0.0.1:{pg_cluster.port}/{db}" in start_lines[0], start_lines


def race(daemons, user, code, count):
    """`count` verifies of one code at once, spread over `daemons`; returns their statuses."""
    statuses = [None] * count
    barrier = threading.Barrier(count)

    def one(i):
        barrier.wait()
        try:
            statuses[i] = daemons[i % len(daemons)].request("verify", {"user": user, "code": code}, timeout=30).status
        except OSError as error:
            statuses[i] = f"error: {error}"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_hundred_racing_verifies_through_two_daemons_accept_exactly_one(pg_cluster, pg_daemons):  # noqa: F811
    db = pg_cluster.create_database()
    first, second = pg_daemons(db), pg_daemons(db)
    shared_key(first, second)
    user = unique_name("tfpg")
    e = first.enroll(user)
    code = e.code(1)
    statuses = race([first, second], user, code, 100)
    assert statuses.count("accepted") == 1, statuses
    # The replays count as failures, so the account soon locks: every other answer is a refusal.
    assert set(statuses) == {"accepted", "codeReused", "lockedOut"}, statuses


def test_recovery_code_and_lockout_hold_on_the_other_daemon(pg_cluster, pg_daemons):  # noqa: F811
    db = pg_cluster.create_database()
    first, second = pg_daemons(db, max_failures=3), pg_daemons(db, max_failures=3)
    shared_key(first, second)
    user = unique_name("tfpg")
    e = first.enroll(user)  # enrolled through the first daemon, used through the second
    assert second.request("verify", {"user": user, "code": e.code(1)}).status == "accepted"
    recovery = e.recovery_codes[0]
    assert second.request("verify", {"user": user, "code": recovery}).status == "accepted"
    assert first.request("verify", {"user": user, "code": recovery}).status == "codeReused"
    # Failures counted by both daemons add up to one lockout that both enforce.
    for d in (first, second, first):
        assert d.request("verify", {"user": user, "code": e.codes.wrong_code()}).status in ("wrongCode", "lockedOut")
    locked = second.request("verify", {"user": user, "code": e.code(0)})
    assert locked.status == "lockedOut", locked


def test_database_stopped_mid_run_refuses_in_time_and_service_returns(pg_cluster, pg_daemons):  # noqa: F811
    db = pg_cluster.create_database()
    d = pg_daemons(db, postgres_timeout=1, window=2)
    user = unique_name("tfpg")
    e = d.enroll(user)
    assert d.request("verify", {"user": user, "code": e.code(1)}).status == "accepted"
    code = e.code(2)
    pg_cluster.stop()
    try:
        for _ in range(5):
            started = time.monotonic()
            answer = d.request("verify", {"user": user, "code": code}, timeout=30)
            elapsed = time.monotonic() - started
            assert answer.status == "internalError", answer  # the module's "unavailable"
            assert elapsed < MODULE_TIMEOUT, f"answered after {elapsed:.1f}s"
        assert d.request("status", {"user": user}).status == "internalError"
    finally:
        pg_cluster.start()
    # Back by itself (reconnect with backoff), and the refused attempts changed nothing: the same
    # code is still good, once.
    deadline = time.monotonic() + 30
    while True:
        answer = d.request("verify", {"user": user, "code": code}, timeout=30)
        if answer.status != "internalError" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status == "accepted", answer
    assert d.request("verify", {"user": user, "code": code}).status == "codeReused"


def test_hung_database_is_answered_within_the_timeout(pg_cluster, pg_daemons):  # noqa: F811
    """A server that accepts nothing and answers nothing (SIGSTOP): every request, even one that
    queued behind another's wait, is refused within the module's timeout; none is accepted."""
    db = pg_cluster.create_database()
    d = pg_daemons(db, window=2)  # the default postgres_timeout, 2 s: twice it would be too late
    user = unique_name("tfpg")
    e = d.enroll(user)
    code = e.code(1)
    answers = []

    def verify():
        started = time.monotonic()
        status = d.request("verify", {"user": user, "code": code}, timeout=30).status
        answers.append((status, time.monotonic() - started))

    pg_cluster.pause()
    try:
        threads = []
        for _ in range(6):
            threads.append(threading.Thread(target=verify))
            threads[-1].start()
            time.sleep(0.3)  # arriving while the earlier ones wait
        for t in threads:
            t.join(60)
    finally:
        pg_cluster.resume()
    assert [status for status, _ in answers] == ["internalError"] * 6, answers
    assert max(elapsed for _, elapsed in answers) < MODULE_TIMEOUT, answers
    deadline = time.monotonic() + 30
    while True:
        answer = d.request("verify", {"user": user, "code": code}, timeout=30)
        if answer.status != "internalError" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status == "accepted", answer


def test_backends_killed_mid_transaction_never_double_accept(pg_cluster, pg_daemons):  # noqa: F811
    db = pg_cluster.create_database()
    first, second = pg_daemons(db), pg_daemons(db)
    shared_key(first, second)
    users = [unique_name("tfpg") for _ in range(8)]
    enrollments = {u: first.enroll(u) for u in users}
    stop = threading.Event()
    killed = [0]

    def killer():
        while not stop.is_set():
            killed[0] += pg_cluster.terminate_backends(db)
            time.sleep(0.01)

    k = threading.Thread(target=killer)
    k.start()
    try:
        codes = {u: enrollments[u].code(1) for u in users}  # fixed now: a step may pass meanwhile
        results = {u: race([first, second], u, codes[u], 20) for u in users}
    finally:
        stop.set()
        k.join(30)
    assert killed[0] > 0, "the killer never found a twofactord session"
    for user, statuses in results.items():
        assert statuses.count("accepted") <= 1, (user, statuses)
        assert set(statuses) <= {"accepted", "codeReused", "lockedOut", "internalError"}, (user, statuses)
    # Both daemons serve again once the killing stops.
    for d in (first, second):
        deadline = time.monotonic() + 30
        while d.request("status", {"user": users[0]}).status != "ok" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert d.request("status", {"user": users[0]}).status == "ok"
    # A code any daemon accepted is refused by both afterwards (as a replay, or by the lockout
    # its replays earned).
    for user, statuses in results.items():
        if "accepted" in statuses:
            for d in (first, second):
                assert d.request("verify", {"user": user, "code": codes[user]}).status in ("codeReused", "lockedOut")


# ---- TLS and secrets -----------------------------------------------------------------------

def tls_daemon(tmp_path_factory, pg, db, **overrides):
    return Daemon(tmp_path_factory.mktemp("twofactord"), {**pg.daemon_config(db), **overrides})


def test_tls_verifies_the_server_and_a_wrong_ca_is_refused(tmp_path_factory, pg_cluster_tls):  # noqa: F811
    pg = pg_cluster_tls
    db = pg.create_database()
    good = tls_daemon(tmp_path_factory, pg, db)
    wrong = tls_daemon(tmp_path_factory, pg, db, postgres_ca_file=f"{pg.certs}/wrong-ca.crt")
    by_cert = tls_daemon(tmp_path_factory, pg, pg.create_database(owner=pg.CERT_ROLE), postgres_user=pg.CERT_ROLE,
                         postgres_cert_file=f"{pg.certs}/client.crt", postgres_key_file=f"{pg.certs}/client.key")
    try:
        good.start(timeout=60)
        user = unique_name("tfpg")
        e = good.enroll(user)
        assert good.request("verify", {"user": user, "code": e.code(1)}).status == "accepted"
        ssl = pg.psql("SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                      "WHERE application_name = 'twofactord'")
        assert ssl == ["t"], ssl

        with pytest.raises(RuntimeError) as refused:
            wrong.start(timeout=60)
        assert wrong.process is None or wrong.process.returncode == 1
        assert "certificate" in str(refused.value).lower(), str(refused.value)
        assert pg.password not in str(refused.value)

        # Client-certificate authentication, no password at all.
        by_cert.start(timeout=60)
        e = by_cert.enroll(user)
        assert by_cert.request("verify", {"user": user, "code": e.code(1)}).status == "accepted"
    finally:
        for d in (good, wrong, by_cert):
            d.destroy()


def test_the_password_is_never_shown(tmp_path_factory, pg_cluster):  # noqa: F811
    pg = pg_cluster
    db = pg.create_database()
    d = Daemon(tmp_path_factory.mktemp("twofactord"), pg.daemon_config(db))
    try:
        d.write_config()
        for flag in ("--check-config", "--print-config"):
            r = subprocess.run([TWOFACTORD, "--config", d.config_path, flag], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r
            assert pg.password not in r.stdout + r.stderr
        printed = subprocess.run([TWOFACTORD, "--config", d.config_path, "--print-config"], capture_output=True,
                                 text=True, timeout=30).stdout
        assert f"postgres_password_file = {pg.password_file}" in printed
        d.start(timeout=60)
        user = unique_name("tfpg")
        e = d.enroll(user)
        d.request("verify", {"user": user, "code": e.code(1)})
        d.request("verify", {"user": user, "code": "000000"})
        d.stop()
        assert pg.password not in d.log()
        # A wrong password: refused, and the refusal does not repeat it either.
        wrong_file = os.path.join(d.dir, "wrong-password")
        with open(wrong_file, "w") as f:
            f.write("not-" + pg.password + "\n")
        os.chmod(wrong_file, 0o600)
        d.config["postgres_password_file"] = wrong_file
        with pytest.raises(RuntimeError) as refused:
            d.start(timeout=60)
        assert "28P01" in str(refused.value) or "password" in str(refused.value), str(refused.value)
        assert pg.password not in str(refused.value) and pg.password not in d.log()
        # A password file others may read is refused before it is used.
        os.chmod(pg.password_file, 0o644)
        try:
            d.config["postgres_password_file"] = pg.password_file
            with pytest.raises(RuntimeError) as exposed:
                d.start(timeout=60)
            assert "chmod 600" in str(exposed.value), str(exposed.value)
        finally:
            os.chmod(pg.password_file, 0o600)
    finally:
        d.destroy()
