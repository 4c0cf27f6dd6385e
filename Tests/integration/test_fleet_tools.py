"""The parts of issue 14 around the store, on the real daemon binary: node_name in every audit
line, `twofactord rotate-key` (re-sealing under a new key while the daemon answers),
`twofactord migrate-store` (every account, its recovery codes, last step, drift and lockout) and
`twofactor admin health`. Codes come from oathtool (helpers.totp)."""
import json
import os
import shutil
import socket
import subprocess
import threading

import pytest

from helpers import TWOFACTORD, TWOFACTOR_CLI, CLI_ENV, Codes, Daemon, unique_name

try:
    import pg_kit  # the PostgreSQL store's kit
except ImportError:
    pg_kit = None


def twofactord(*args, timeout=120):
    return subprocess.run([TWOFACTORD, *args], capture_output=True, text=True, timeout=timeout)


def verify(daemon, user, code):
    return daemon.request("verify", {"user": user, "code": code, "service": "tftest"})


# --- node_name ----------------------------------------------------------------------------------

def test_every_audit_line_names_the_node(daemon_factory):
    d = daemon_factory(node_name="web-7")
    user = unique_name("tfn")
    e = d.enroll(user)
    assert verify(d, user, e.codes.next_code()).status == "accepted"
    assert verify(d, user, e.codes.wrong_code()).status == "wrongCode"
    d.stop()
    lines = [line for line in d.log().splitlines() if line.strip()]
    assert any(line.startswith(f"verify account={user} ") and "result=accepted" in line for line in lines), lines
    assert any(line.startswith("start ") for line in lines) and any(line.startswith("stop ") for line in lines)
    assert all(line.endswith(" node=web-7") for line in lines), lines


def test_node_name_defaults_to_the_host_name(daemon):
    daemon.enroll(unique_name("tfn"))
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    assert lines and all(line.endswith(f" node={socket.gethostname()}") for line in lines), lines


def test_a_node_name_that_could_forge_fields_is_refused(tmp_path):
    config = tmp_path / "twofactord.conf"
    config.write_text("node_name = web 7 result=accepted\n")
    checked = twofactord("--config", str(config), "--check-config")
    assert checked.returncode == 1 and "node_name must be" in checked.stderr, checked


# --- rotate-key ---------------------------------------------------------------------------------

def enroll_some(daemon, count):
    return [daemon.enroll(unique_name("tfr")) for _ in range(count)]


def test_rotate_key_reseals_while_the_daemon_answers(daemon):
    enrolled = enroll_some(daemon, 5)
    pending_user = unique_name("tfp")
    pending = daemon.request("enrollBegin", {"user": pending_user})
    assert pending.status == "ok"
    with open(daemon.key_file, "rb") as f:
        old_key = f.read()
    assert len(old_key) == 32

    # Meanwhile: enrollments (seal and open) and checks, none of which may fail.
    stop, problems, rounds = threading.Event(), [], [0]

    def busy():
        while not stop.is_set():
            try:
                e = daemon.enroll(unique_name("tfb"))
                answer = daemon.request("check", {"user": e.user})
                if answer.status != "enrolled":
                    problems.append(answer)
                rounds[0] += 1
            except Exception as error:  # an assertion inside enroll() included
                problems.append(error)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        steps = []
        for step in ("stage", "promote", "finish"):
            result = twofactord("rotate-key", "--config", daemon.config_path, "--step", step)
            assert result.returncode == 0, (step, result.stdout, result.stderr)
            steps.append(result.stdout)
            # Between the steps, with the file in each of its states, logins go on.
            e = enrolled[len(steps)]
            assert verify(daemon, e.user, e.codes.next_code()).status == "accepted", (step, daemon.log()[-2000:])
    finally:
        stop.set()
        worker.join(60)
    assert not problems, problems[:3]
    assert rounds[0] > 0
    assert "re-sealed" in steps[1] and "one sealing key" in steps[2], steps

    with open(daemon.key_file, "rb") as f:
        ring = f.read()
    assert len(ring) == 64 and ring[:32] == old_key and ring[32:] != old_key
    assert os.stat(daemon.key_file).st_mode & 0o777 == 0o600

    # Every enrollment logs in with oathtool's codes; a recovery code still works (its hash key
    # is the ring's first key); the pending enrollment confirms.
    for e in enrolled:
        assert verify(daemon, e.user, e.codes.next_code()).status == "accepted", e.user
    assert verify(daemon, enrolled[0].user, enrolled[0].recovery_codes[0]).status == "accepted"
    confirmed = daemon.request("enrollConfirm", {"user": pending_user, "code": Codes.of(pending).current()})
    assert confirmed.status == "ok", confirmed

    # The old key alone opens nothing any more: a daemon given only it cannot verify.
    daemon.stop()
    with open(daemon.key_file, "wb") as f:
        f.write(old_key)
    daemon.start()
    e = enrolled[-1]
    assert verify(daemon, e.user, e.codes.next_code()).status == "internalError"
    assert verify(daemon, pending_user, Codes.of(pending).next_code()).status == "internalError"


def test_rotate_key_all_at_once_then_again(daemon):
    enrolled = enroll_some(daemon, 3)
    for _ in range(2):
        result = twofactord("rotate-key", "--config", daemon.config_path)
        assert result.returncode == 0, result.stderr
        assert "re-sealed" in result.stdout
        for e in enrolled:
            assert verify(daemon, e.user, e.codes.next_code()).status == "accepted"


def test_rotate_key_refuses_a_promote_without_a_staged_key(daemon):
    enroll_some(daemon, 1)
    result = twofactord("rotate-key", "--config", daemon.config_path, "--step", "promote")
    assert result.returncode == 1 and "no staged key" in result.stderr, result


def test_a_key_file_of_the_wrong_length_is_refused(daemon_factory):
    d = daemon_factory()
    d.stop()
    with open(d.key_file, "ab") as f:
        f.write(b"x" * 5)
    with pytest.raises(RuntimeError, match="must hold 32, 64 or 96 bytes"):
        d.start()


# --- migrate-store ------------------------------------------------------------------------------

def db_url(daemon):
    return "sqlite://" + os.path.join(daemon.state_dir, "twofactor.db")


def populate(daemon):
    """Accounts in every state: logged in (last step), recovery code spent, locked out, pending."""
    users = {name: unique_name(f"tfm{name[0]}") for name in ("active", "recovered", "locked", "fresh")}
    made = {name: daemon.enroll(user) for name, user in users.items()}
    active, recovered, locked = made["active"], made["recovered"], made["locked"]
    last_code = active.codes.next_code()
    assert verify(daemon, active.user, last_code).status == "accepted"
    assert verify(daemon, recovered.user, recovered.recovery_codes[0]).status == "accepted"
    for _ in range(3):  # max_failures = 3 in these tests
        verify(daemon, locked.user, locked.codes.wrong_code())
    assert verify(daemon, locked.user, locked.codes.next_code()).status == "lockedOut"
    pending_user = unique_name("tfmp")
    pending = daemon.request("enrollBegin", {"user": pending_user})
    return made, last_code, pending_user, pending


def test_migrate_store_copies_every_account_and_its_state(daemon_factory):
    source = daemon_factory(max_failures=3)
    made, last_code, pending_user, pending = populate(source)
    before = source.request("listAccounts")
    source.stop()

    target = Daemon(None, {"max_failures": 3, "key_file": source.key_file})
    try:
        target_url = "sqlite://" + os.path.join(target.state_dir, "twofactor.db")
        os.makedirs(target.state_dir, mode=0o700)
        dry = twofactord("migrate-store", "--from", db_url(source), "--to", target_url, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "5 account(s): 4 enrolled, 1 pending, 1 locked out" in dry.stdout, dry.stdout
        assert "dry run" in dry.stdout and "target: does not exist yet" in dry.stdout, dry.stdout
        assert not os.path.exists(target_url[len("sqlite://"):])  # a dry run creates nothing

        copied = twofactord("migrate-store", "--from", db_url(source), "--to", target_url)
        assert copied.returncode == 0, copied.stderr
        assert "copied and verified: 5 account(s)" in copied.stdout, copied.stdout

        again = twofactord("migrate-store", "--from", db_url(source), "--to", target_url)
        assert again.returncode == 1 and "the target holds 5 account(s)" in again.stderr, again
        forced = twofactord("migrate-store", "--from", db_url(source), "--to", target_url, "--replace")
        assert forced.returncode == 0, forced.stderr

        target.start()
        after = target.request("listAccounts")
        assert sorted(map(repr, after.get("account", []))) == sorted(map(repr, before.get("account", [])))
        active, recovered, locked = made["active"], made["recovered"], made["locked"]
        assert verify(target, active.user, last_code).status == "codeReused"
        assert verify(target, active.user, active.codes.next_code()).status == "accepted"
        assert verify(target, recovered.user, recovered.recovery_codes[0]).status == "codeReused"
        assert verify(target, recovered.user, recovered.recovery_codes[1]).status == "accepted"
        assert verify(target, locked.user, locked.codes.next_code()).status == "lockedOut"
        assert target.request("enrollConfirm", {"user": pending_user,
                                                "code": Codes.of(pending).current()}).status == "ok"
    finally:
        target.destroy()


@pytest.fixture(scope="module")
def postgres():
    if pg_kit is None or os.geteuid() != 0 or not pg_kit.available():
        pytest.skip("needs root, the PostgreSQL store's pg_kit and Debian's postgresql package")
    with pg_kit.PostgresCluster(tls=True) as pg:
        yield pg


def test_migrate_sqlite_to_postgresql_and_back(daemon_factory, postgres):
    pg = postgres
    source = daemon_factory(max_failures=3)
    made, last_code, pending_user, pending = populate(source)
    before = source.request("listAccounts")
    source.stop()
    database = pg.create_database()
    pg_url = (f"postgresql://{pg.ROLE}@{pg.host}:{pg.port}/{database}?sslmode=verify-full"
              f"&sslrootcert={pg.certs}/ca.crt&passfile={pg.password_file}")
    there = twofactord("migrate-store", "--from", db_url(source), "--to", pg_url)
    assert there.returncode == 0, there.stderr
    assert "copied and verified: 5 account(s)" in there.stdout and pg.password not in there.stdout, there.stdout

    on_pg = daemon_factory(max_failures=3, key_file=source.key_file, **pg.daemon_config(database))
    assert sorted(map(repr, on_pg.request("listAccounts").get("account", []))) == \
        sorted(map(repr, before.get("account", [])))
    active, recovered, locked = made["active"], made["recovered"], made["locked"]
    assert verify(on_pg, active.user, last_code).status == "codeReused"
    accepted_on_pg = active.codes.next_code()
    assert verify(on_pg, active.user, accepted_on_pg).status == "accepted"
    assert verify(on_pg, recovered.user, recovered.recovery_codes[0]).status == "codeReused"
    assert verify(on_pg, recovered.user, recovered.recovery_codes[1]).status == "accepted"
    assert verify(on_pg, locked.user, locked.codes.next_code()).status == "lockedOut"
    on_pg.stop()

    # Rollback: back to a SQLite file, with what happened on PostgreSQL.
    back = Daemon(None, {"max_failures": 3, "key_file": source.key_file})
    try:
        os.makedirs(back.state_dir, mode=0o700)
        home = twofactord("migrate-store", "--from", pg_url, "--to", db_url(back))
        assert home.returncode == 0, home.stderr
        back.start()
        assert verify(back, active.user, accepted_on_pg).status == "codeReused"
        assert verify(back, recovered.user, recovered.recovery_codes[1]).status == "codeReused"
        assert verify(back, locked.user, locked.codes.next_code()).status == "lockedOut"
        assert back.request("enrollConfirm", {"user": pending_user, "code": Codes.of(pending).current()}).status == "ok"
    finally:
        back.destroy()


def test_migrate_store_refuses_a_missing_source_and_bad_urls(tmp_path):
    missing = twofactord("migrate-store", "--from", f"sqlite://{tmp_path}/none.db", "--to", f"sqlite://{tmp_path}/t.db")
    assert missing.returncode == 1 and "no such SQLite store" in missing.stderr, missing
    same = twofactord("migrate-store", "--from", f"sqlite://{tmp_path}/a.db", "--to", f"sqlite://{tmp_path}/a.db")
    assert same.returncode == 1 and "same store" in same.stderr, same
    bad = twofactord("migrate-store", "--from", "mysql://u:hunter2@h/db", "--to", f"sqlite://{tmp_path}/a.db")
    assert bad.returncode == 1 and "unknown store URL" in bad.stderr and "hunter2" not in bad.stderr, bad


# --- admin health -------------------------------------------------------------------------------

def test_admin_health_shows_the_store_and_the_node(daemon_factory):
    d = daemon_factory(node_name="db-probe-1")
    result = subprocess.run([TWOFACTOR_CLI, "admin", "health", "--json", "--socket", d.socket],
                            capture_output=True, text=True, env=CLI_ENV, timeout=30)
    assert result.returncode == 0, result.stderr
    health = json.loads(result.stdout)
    assert health["node"] == "db-probe-1"
    assert health["store_kind"] == "sqlite"
    assert health["store_location"] == db_url(d)
    assert health["store_reachable"] is True and health["store_errors"] == 0
    assert health["clock_state"] in ("ok", "warning", "bad", "unknown")
    text = subprocess.run([TWOFACTOR_CLI, "admin", "health", "--socket", d.socket],
                          capture_output=True, text=True, env=CLI_ENV, timeout=30)
    assert text.returncode == 0 and "Reachable:" in text.stdout and "db-probe-1" in text.stdout, text
    assert "health account=- by=root(uid=0) result=ok reason=ok node=db-probe-1" in d.log()


def test_admin_health_is_for_admins_only(daemon, user):
    result = subprocess.run(["runuser", "-u", user.name, "--", TWOFACTOR_CLI, "admin", "health",
                             "--socket", daemon.socket], capture_output=True, text=True, env=CLI_ENV,
                            timeout=30, cwd="/")
    assert result.returncode == 6, (result.stdout, result.stderr)
