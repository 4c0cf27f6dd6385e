"""Peer credentials decide who may do what (twofactord, docs/PROTOCOL.md "Who may ask").

Requests are made from forked children that dropped to a throwaway user's uid, so the daemon's
SO_PEERCRED sees a real non-root identity. Run as root:
    TWOFACTORD=.build/debug/twofactord /usr/bin/python3 -m pytest Tests/integration/test_daemon.py
"""
import grp
import json
import os
import select
import socket
import subprocess
import time
import unicodedata

import pytest

import twofactor_wire as wire
from helpers import TWOFACTORD, Daemon, ThrowawayGroup, totp, unique_name


@pytest.fixture
def admin_group():
    group = ThrowawayGroup()
    try:
        yield group
    finally:
        group.remove()


def as_user(daemon, u, op, fields=(), groups=()):
    return daemon.request(op, fields, as_uid=u.uid, as_gid=u.gid, groups=groups)


def audit_lines(daemon, prefix):
    return [line for line in daemon.log().splitlines() if line.startswith(prefix)]


def test_ordinary_user_verifies_and_checks_only_its_own_account(daemon, make_user):
    alice, bob = make_user(), make_user()
    a = daemon.enroll(alice.name)
    daemon.enroll(bob.name)

    assert as_user(daemon, alice, "check", {"user": alice.name}).status == "enrolled"
    accepted = as_user(daemon, alice, "verify", {"user": alice.name, "code": a.code(1)})
    assert accepted.status == "accepted", accepted

    # Someone else's account: refused, whatever the code, and nothing is counted against bob.
    assert as_user(daemon, alice, "check", {"user": bob.name}).status == "permissionDenied"
    for _ in range(6):
        denied = as_user(daemon, alice, "verify", {"user": bob.name, "code": "000000"})
        assert denied.status == "permissionDenied", denied
    assert daemon.request("status", {"user": bob.name})["failures"] == 0
    assert f"verify account={bob.name} service=- rhost=- tty=- method=- result=rejected reason=permission-denied" \
        in daemon.log()


def test_ordinary_user_manages_only_itself_and_no_admin_operations(daemon, make_user):
    alice, bob = make_user(), make_user()
    daemon.enroll(bob.name)

    for op, fields in [
        ("enrollBegin", {"user": bob.name}),
        ("enrollConfirm", {"user": bob.name, "code": "123456"}),
        ("enrollCancel", {"user": bob.name}),
        ("disable", {"user": bob.name, "code": "123456"}),
        ("regenerateRecoveryCodes", {"user": bob.name, "code": "123456"}),
        ("status", {"user": bob.name}),
        ("listAccounts", {}),
        ("resetAccount", {"user": bob.name}),
        ("unlockAccount", {"user": bob.name}),
        ("resetAccount", {"user": alice.name}),   # admin operations even on oneself
        ("unlockAccount", {"user": alice.name}),
        ("clockStatus", {}),
    ]:
        answer = as_user(daemon, alice, op, fields)
        assert answer.status == "permissionDenied", (op, answer)
    assert daemon.request("check", {"user": bob.name}).status == "enrolled"
    denied = audit_lines(daemon, "list ")
    assert denied == [f"list account=- by={alice.name}(uid={alice.uid}) result=denied reason=permission-denied"
                      f" node={socket.gethostname()}"]


def test_ordinary_user_enrolls_itself_and_proves_possession_for_changes(daemon, make_user):
    alice = make_user()
    begun = as_user(daemon, alice, "enrollBegin", {"user": alice.name})
    assert begun.status == "ok", begun
    secret = begun["secret"]
    confirmed = as_user(daemon, alice, "enrollConfirm", {"user": alice.name, "code": totp(secret)})
    assert confirmed.status == "ok" and len(confirmed["recoveryCode"]) == 8, confirmed
    assert f"enroll-confirm account={alice.name} by={alice.name}(uid={alice.uid}) result=ok reason=ok" in daemon.log()

    status = as_user(daemon, alice, "status", {"user": alice.name})
    assert status.status == "ok" and status["isEnrolled"] is True

    # Changes need a current code from an ordinary user.
    assert as_user(daemon, alice, "regenerateRecoveryCodes", {"user": alice.name}).status == "codeRequired"
    assert as_user(daemon, alice, "disable", {"user": alice.name}).status == "codeRequired"
    assert as_user(daemon, alice, "disable", {"user": alice.name, "code": "000000"}).status == "wrongCode"
    regenerated = as_user(daemon, alice, "regenerateRecoveryCodes",
                          {"user": alice.name, "code": confirmed["recoveryCode"][0]})
    assert regenerated.status == "ok" and len(regenerated["recoveryCode"]) == 8, regenerated
    # The wrong code above counted toward the lockout; the success reset it.
    assert as_user(daemon, alice, "status", {"user": alice.name})["failures"] == 0
    later = totp(secret, at=time.time() + 30)
    assert as_user(daemon, alice, "disable", {"user": alice.name, "code": later}).status == "ok"
    assert daemon.request("check", {"user": alice.name}).status == "notEnrolled"


def test_admin_group_member_manages_anyone_but_verifies_only_itself(daemon_factory, make_user, admin_group):
    daemon = daemon_factory(admin_group=admin_group.name)
    admin = make_user(groups=[admin_group.name])
    bob = make_user()
    b = daemon.enroll(bob.name)

    listed = as_user(daemon, admin, "listAccounts")
    assert listed.status == "ok" and [acc["user"] for acc in listed["account"]] == [bob.name], listed
    assert as_user(daemon, admin, "status", {"user": bob.name}).status == "ok"
    assert as_user(daemon, admin, "clockStatus").status == "ok"
    assert as_user(daemon, admin, "unlockAccount", {"user": bob.name}).status == "ok"
    # Admins need no code for someone else's changes.
    assert as_user(daemon, admin, "regenerateRecoveryCodes", {"user": bob.name}).status == "ok"
    # But only root verifies codes for another account.
    assert as_user(daemon, admin, "verify", {"user": bob.name, "code": b.code(1)}).status == "permissionDenied"
    assert as_user(daemon, admin, "resetAccount", {"user": bob.name}).status == "ok"
    assert daemon.request("check", {"user": bob.name}).status == "notEnrolled"
    begun = as_user(daemon, admin, "enrollBegin", {"user": bob.name})
    assert begun.status == "ok"
    assert as_user(daemon, admin, "enrollCancel", {"user": bob.name}).status == "ok"
    assert f"reset account={bob.name} by={admin.name}(uid={admin.uid}) result=ok reason=ok" in daemon.log()


def test_primary_group_counts_as_admin_membership(daemon_factory, admin_group, make_user):
    # admin_group before make_user: the user goes first, so the group is no one's primary group
    # when it is deleted.
    daemon = daemon_factory(admin_group=admin_group.name)
    admin = make_user()
    try:
        subprocess.run(["usermod", "-g", admin_group.name, admin.name], check=True, capture_output=True)
        answer = daemon.request("listAccounts", as_uid=admin.uid, as_gid=admin_group.gid)
        assert answer.status == "ok", answer
    finally:
        # No longer the primary group, the user's own group outlives userdel.
        subprocess.run(["groupdel", admin.name], capture_output=True)


def test_missing_admin_group_means_root_only(daemon_factory, make_user):
    daemon = daemon_factory(admin_group="no-such-group-twofactor")
    alice = make_user()
    assert as_user(daemon, alice, "listAccounts").status == "permissionDenied"
    assert daemon.request("listAccounts").status == "ok"


def test_root_may_do_everything(daemon, make_user):
    bob = make_user()
    b = daemon.enroll(bob.name)
    assert daemon.request("verify", {"user": bob.name, "code": b.code(1)}).status == "accepted"
    assert daemon.request("status", {"user": bob.name}).status == "ok"
    assert daemon.request("listAccounts").status == "ok"
    assert daemon.request("unlockAccount", {"user": bob.name}).status == "ok"
    assert daemon.request("disable", {"user": bob.name}).status == "ok"
    assert daemon.request("clockStatus").status == "ok"


def test_uid_without_passwd_entry_owns_nothing(daemon):
    daemon.enroll("root")
    ghost = 54321
    answer = daemon.request("check", {"user": "root"}, as_uid=ghost, as_gid=ghost)
    assert answer.status == "permissionDenied"
    assert daemon.request("verify", {"user": "54321", "code": "123456"}, as_uid=ghost, as_gid=ghost).status \
        == "permissionDenied"
    assert f"by=?(uid={ghost}) result=denied" in daemon.log()


def _hold_connections_as(socket_path, uid, gid, count, request_fields):
    """A child, as uid/gid, opens `count` connections and asks `check` on each, then keeps them
    open. Returns (its pid, the statuses it saw, a pipe to write to when it may let go)."""
    release_read, release_write = os.pipe()

    def hold(out):
        os.close(release_write)
        held, seen = [], []
        for _ in range(count):
            sock = wire.connect(socket_path, timeout=5)
            held.append(sock)
            sock.sendall(wire.encode_frame(wire.OP["check"], request_fields))
            try:
                seen.append(wire.read_response(sock).status)
            except (ConnectionError, OSError) as error:
                seen.append(f"closed: {error}")
        os.write(out, json.dumps(seen).encode())
        os.close(out)
        os.read(release_read, 1)  # keep the connections until the parent is done

    pid, results = wire.fork_as(uid, gid, (), hold)
    os.close(release_read)
    return pid, json.loads(wire.read_all(results) or b"[]"), release_write


def test_one_user_cannot_crowd_out_logins_or_other_users(daemon_factory, make_user):
    """A local user hoarding connections gets `busy` past its own share; root (sshd, sudo) and
    other users are still served."""
    daemon = daemon_factory(max_connections=10, read_timeout=30)
    hoarder, other = make_user(), make_user()
    pid, seen, release = _hold_connections_as(daemon.socket, hoarder.uid, hoarder.gid, 12,
                                              {"user": hoarder.name})
    try:
        assert seen[:8] == ["notEnrolled"] * 8, seen
        assert all(s != "notEnrolled" for s in seen[8:]), seen
        assert "busy" in seen[8:], seen
        # Root, as sshd and sudo run, is served while the hoarder holds its share.
        assert daemon.request("check", {"user": other.name}).status == "notEnrolled"
        # So is another user, from the shared slots the hoarder could not take.
        answer = daemon.request("check", {"user": other.name}, as_uid=other.uid, as_gid=other.gid)
        assert answer.status == "notEnrolled", answer
    finally:
        os.write(release, b"x")
        os.close(release)
        os.waitpid(pid, 0)


def test_admin_rights_are_checked_on_every_request_of_a_connection(daemon_factory, make_user):
    """Removing someone from the admin group takes effect on connections already open."""
    group = ThrowawayGroup()
    try:
        daemon = daemon_factory(admin_group=group.name, read_timeout=30)
        admin = make_user(groups=[group.name])
        victim = make_user()
        go_read, go_write = os.pipe()

        def ask_twice(out):
            os.close(go_write)
            with wire.connect(daemon.socket, timeout=10) as sock:
                for _ in range(2):
                    sock.sendall(wire.encode_frame(wire.OP["status"], {"user": victim.name}))
                    os.write(out, (wire.read_response(sock).status + "\n").encode())
                    os.read(go_read, 1)  # wait for the parent between the two requests

        pid, read_end = wire.fork_as(admin.uid, admin.gid, [group.gid], ask_twice)
        os.close(go_read)
        reader = os.fdopen(read_end)
        assert reader.readline().strip() == "ok"
        subprocess.run(["gpasswd", "-d", admin.name, group.name], check=True, capture_output=True)
        assert admin.name not in grp.getgrnam(group.name).gr_mem
        os.write(go_write, b"x")
        assert reader.readline().strip() == "permissionDenied"
        os.write(go_write, b"x")
        reader.close()
        os.close(go_write)
        _, status = os.waitpid(pid, 0)
        assert status == 0
    finally:
        group.remove()


def test_a_stopping_daemon_leaves_a_newer_daemons_socket_alone(daemon_factory):
    """An old daemon shutting down must not unlink the socket a newer one now listens on."""
    first = daemon_factory()
    os.unlink(first.socket)  # as if the file had been replaced by a new start
    second = daemon_factory(socket=first.socket)
    assert first.stop() == 0
    assert os.path.exists(second.socket)
    assert second.request("check", {"user": "root"}).status == "notEnrolled"
    # And the daemon still removes its own socket when nobody replaced it.
    assert second.stop() == 0
    assert not os.path.exists(second.socket)


def test_a_second_daemon_refuses_a_socket_someone_listens_on(daemon_factory, tmp_path):
    first = daemon_factory()
    second = Daemon(tmp_path, {"socket": first.socket})
    try:
        second.write_config()
        result = subprocess.run([TWOFACTORD, "--config", second.config_path],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert "already listening" in result.stderr, result.stderr
    finally:
        second.destroy()
    assert first.request("check", {"user": "root"}).status == "notEnrolled"


# --- names are bytes (issue 10, point 4) ---------------------------------------------------------

def look_alike_users(make_user, groups=()):
    """Two real users whose names are canonically equivalent but different bytes: "...é" with
    U+00E9, and "...e" + U+0301, which useradd accepts as it is. The first gets `groups`."""
    base = unique_name("tfn")
    composed = make_user(name=base + "\u00e9", groups=groups)
    decomposed = make_user(name=base + "e\u0301")
    assert composed.name.encode() != decomposed.name.encode()
    assert unicodedata.normalize("NFC", decomposed.name) == composed.name
    assert composed.uid != decomposed.uid
    return composed, decomposed


def test_a_canonically_equivalent_name_owns_nothing(daemon, make_user):
    owner, look_alike = look_alike_users(make_user)
    # Not enrolled yet: the look-alike cannot enroll it with an authenticator of its own.
    assert as_user(daemon, look_alike, "enrollBegin", {"user": owner.name}).status == "permissionDenied"
    assert as_user(daemon, look_alike, "check", {"user": owner.name}).status == "permissionDenied"
    assert daemon.request("status", {"user": owner.name})["pending"] is False

    enrollment = daemon.enroll(owner.name)
    # Knowing no code, it cannot lock the account out ...
    for _ in range(6):
        denied = as_user(daemon, look_alike, "verify", {"user": owner.name, "code": "000000"})
        assert denied.status == "permissionDenied", denied
    status = daemon.request("status", {"user": owner.name})
    assert status["failures"] == 0 and "lockedUntil" not in status, status
    # ... and knowing one, it can neither log in nor change the enrollment.
    code = enrollment.code(1)
    for op in ("verify", "regenerateRecoveryCodes", "disable", "enrollCancel", "resetAccount", "unlockAccount"):
        denied = as_user(daemon, look_alike, op, {"user": owner.name, "code": code})
        assert denied.status == "permissionDenied", (op, denied)
    assert daemon.request("check", {"user": owner.name}).status == "enrolled"

    # Each still has its own account, byte for byte.
    assert as_user(daemon, owner, "verify", {"user": owner.name, "code": code}).status == "accepted"
    assert as_user(daemon, look_alike, "enrollBegin", {"user": look_alike.name}).status == "ok"
    listed = [a["user"] for a in daemon.request("listAccounts")["account"]]
    assert sorted(listed) == sorted([owner.name, look_alike.name]), listed


def test_admin_group_membership_does_not_pass_to_a_look_alike(daemon_factory, make_user, admin_group):
    daemon = daemon_factory(admin_group=admin_group.name)
    admin, look_alike = look_alike_users(make_user, groups=[admin_group.name])
    assert grp.getgrnam(admin_group.name).gr_mem == [admin.name]
    assert as_user(daemon, admin, "listAccounts").status == "ok"
    victim = make_user()
    daemon.enroll(victim.name)
    for op, fields in [("listAccounts", {}), ("resetAccount", {"user": victim.name}),
                       ("disable", {"user": victim.name})]:
        denied = as_user(daemon, look_alike, op, fields)
        assert denied.status == "permissionDenied", (op, denied)
    assert daemon.request("check", {"user": victim.name}).status == "enrolled"


# --- administrators and their own enrollment (issue 10, point 6) ---------------------------------

def test_an_admin_gives_a_code_for_changes_to_their_own_enrollment(daemon_factory, make_user, admin_group):
    daemon = daemon_factory(admin_group=admin_group.name)
    admin, other = make_user(groups=[admin_group.name]), make_user()
    enrollment = daemon.enroll(admin.name)
    daemon.enroll(other.name)

    assert as_user(daemon, admin, "regenerateRecoveryCodes", {"user": admin.name}).status == "codeRequired"
    assert as_user(daemon, admin, "disable", {"user": admin.name}).status == "codeRequired"
    assert as_user(daemon, admin, "disable", {"user": admin.name, "code": "000000"}).status == "wrongCode"
    # reset and unlock take no code: on one's own account they would bypass it.
    for op in ("resetAccount", "unlockAccount"):
        denied = as_user(daemon, admin, op, {"user": admin.name})
        assert denied.status == "permissionDenied", (op, denied)
        assert "own account" in denied["message"], denied
    assert daemon.request("check", {"user": admin.name}).status == "enrolled"
    assert daemon.request("status", {"user": admin.name})["failures"] == 1
    assert f"reset account={admin.name} by={admin.name}(uid={admin.uid}) result=denied reason=permission-denied" \
        in daemon.log()
    # With a code it works, as for anyone.
    regenerated = as_user(daemon, admin, "regenerateRecoveryCodes", {"user": admin.name, "code": enrollment.code(1)})
    assert regenerated.status == "ok", regenerated
    # Someone else's account: admin powers, no code.
    assert as_user(daemon, admin, "unlockAccount", {"user": other.name}).status == "ok"
    assert as_user(daemon, admin, "disable", {"user": other.name}).status == "ok"


def test_roots_own_account_is_roots_own(daemon, make_user):
    """Root acting on the account "root" is acting on its own: a code, and no reset or unlock."""
    enrollment = daemon.enroll("root")
    other = make_user()
    daemon.enroll(other.name)
    assert daemon.request("disable", {"user": "root"}).status == "codeRequired"
    assert daemon.request("regenerateRecoveryCodes", {"user": "root"}).status == "codeRequired"
    assert daemon.request("resetAccount", {"user": "root"}).status == "permissionDenied"
    assert daemon.request("unlockAccount", {"user": "root"}).status == "permissionDenied"
    assert daemon.request("disable", {"user": "root", "code": enrollment.code(1)}).status == "ok"
    assert daemon.request("resetAccount", {"user": other.name}).status == "ok"


# --- learned drift (issue 10, point 3) -----------------------------------------------------------

def faketime(offset):
    """A wrapper that starts the daemon with its clock shifted by `offset` ("-120s")."""
    return ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", offset]


def current_step(margin=8):
    """The current 30 s step, once at least `margin` seconds of it are left, so that a code
    computed now is checked by the daemon in the same step."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.05)
    return int(time.time() // 30)


def learn_drift_minus_two(daemon, user):
    """The daemon's clock runs 120 s, then 60 s behind for a while (window 1) and teaches the
    account a drift of -2 (the confirming code at -1 step, a login at -2); then the clock is
    right again. Returns (secret, recovery codes) with the daemon running on the real clock."""
    daemon.stop()
    daemon.start(wrapper=faketime("-120s"))
    secret = daemon.request("enrollBegin", {"user": user})["secret"]
    step = current_step()   # the daemon's step is step - 4
    confirmed = daemon.request("enrollConfirm", {"user": user, "code": totp(secret, at=(step - 5) * 30)})
    assert confirmed.status == "ok", confirmed
    assert daemon.request("status", {"user": user})["driftSteps"] == -1

    daemon.stop()
    daemon.start(wrapper=faketime("-60s"))
    step = current_step()   # the daemon's step is step - 2
    accepted = daemon.request("verify", {"user": user, "code": totp(secret, at=(step - 4) * 30)})
    assert accepted.status == "accepted", accepted
    assert daemon.request("status", {"user": user})["driftSteps"] == -2

    daemon.restart()
    return secret, confirmed["recoveryCode"]


def test_a_drift_learned_from_a_wrong_clock_never_refuses_the_current_code(daemon_factory):
    daemon = daemon_factory(window=1, drift_learning=True, drift_max_steps=2)
    user = unique_name("tfd")
    secret, _ = learn_drift_minus_two(daemon, user)
    # With drift -2 and window 1 the daemon used to accept only now-3 ... now-1.
    answer = daemon.request("verify", {"user": user, "code": totp(secret, at=current_step() * 30)})
    assert answer.status == "accepted", answer
    assert daemon.request("status", {"user": user})["driftSteps"] == 0


def test_a_recovery_code_login_and_admin_unlock_clear_learned_drift(daemon_factory):
    daemon = daemon_factory(window=1, drift_learning=True, drift_max_steps=2)
    by_recovery, by_unlock = unique_name("tfd"), unique_name("tfd")
    _, recovery_codes = learn_drift_minus_two(daemon, by_recovery)
    answer = daemon.request("verify", {"user": by_recovery, "code": recovery_codes[0]})
    assert answer.status == "accepted" and wire.METHOD[answer["method"]] == "recovery", answer
    assert daemon.request("status", {"user": by_recovery})["driftSteps"] == 0

    learn_drift_minus_two(daemon, by_unlock)
    assert daemon.request("unlockAccount", {"user": by_unlock}).status == "ok"
    assert daemon.request("status", {"user": by_unlock})["driftSteps"] == 0


# --- slow user lookups (issue 10, point 7) ---------------------------------------------------------

SLOW_NSS_SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_nss_shim.c")


@pytest.fixture
def slow_nss_library(tmp_path):
    """slow_nss_shim.c built for LD_PRELOAD: getpwuid_r (uid != 0) and getgrnam_r take 2 s."""
    library = tmp_path / "slow_nss.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(library), SLOW_NSS_SHIM,
                    "-ldl"], check=True, capture_output=True)
    return str(library)


def _flood_as(socket_path, u, connections):
    """A child, as `u`, keeps a `check` of its own account in flight on each of `connections`
    connections until the parent writes to the returned pipe; it then reports the statuses it
    got. Returns (pid, results fd, stop fd)."""
    stop_read, stop_write = os.pipe()
    frame = wire.encode_frame(wire.OP["check"], {"user": u.name})

    def flood(out):
        os.close(stop_write)
        socks = [wire.connect(socket_path, timeout=60) for _ in range(connections)]
        for sock in socks:
            sock.sendall(frame)
        statuses = []
        while True:
            ready, _, _ = select.select([stop_read, *socks], [], [])
            if stop_read in ready:
                break
            for sock in ready:
                statuses.append(wire.read_response(sock).status)
                sock.sendall(frame)
        os.write(out, json.dumps(statuses).encode())

    pid, results = wire.fork_as(u.uid, u.gid, (), flood)
    os.close(stop_read)
    return pid, results, stop_write


def test_slow_user_lookups_never_delay_roots_requests(daemon_factory, make_user, slow_nss_library):
    daemon = daemon_factory(read_timeout=60)
    flooder = make_user()
    account = unique_name("tfr")
    enrollment = daemon.enroll(account)
    daemon.stop()
    daemon.start(wrapper=["env", f"LD_PRELOAD={slow_nss_library}", "SLOW_NSS_DELAY_MS=2000"])

    flood_started = time.monotonic()
    pid, results, stop = _flood_as(daemon.socket, flooder, 8)   # 8: one user's connection limit
    try:
        time.sleep(1)   # every event loop thread would now be inside a lookup
        timings = []
        for op, fields in [("check", {"user": account}), ("verify", {"user": account, "code": enrollment.code(1)}),
                           ("check", {"user": account})]:
            started = time.monotonic()
            answer = daemon.request(op, fields, timeout=60)
            timings.append((op, answer.status, round(time.monotonic() - started, 2)))
        # Let the flood's own (slow, fresh) lookups finish at least once.
        time.sleep(max(0.0, flood_started + 6 - time.monotonic()))
    finally:
        os.write(stop, b"x")
        os.close(stop)
        statuses = json.loads(wire.read_all(results) or b"[]")
        _, status = os.waitpid(pid, 0)
    assert [t[1] for t in timings] == ["enrolled", "accepted", "enrolled"], timings
    # The PAM module gives up after 3 s by default; root's answers must come well before.
    assert max(t[2] for t in timings) < 1.0, timings
    assert status == 0
    assert statuses and set(statuses) == {"notEnrolled"}, statuses


def test_a_stop_answers_the_request_in_progress_of_a_half_closed_client(daemon_factory, make_user,
                                                                         slow_nss_library):
    """SIGTERM while a client that already shut down its sending side waits for its answer (its
    caller lookup takes 2 s): the daemon answers it, then exits 0."""
    daemon = daemon_factory(read_timeout=60)
    daemon.stop()
    daemon.start(wrapper=["env", f"LD_PRELOAD={slow_nss_library}", "SLOW_NSS_DELAY_MS=2000"])
    asker = make_user()
    sent_read, sent_write = os.pipe()

    def ask_and_half_close(out):
        os.close(sent_read)
        with wire.connect(daemon.socket, timeout=30) as sock:
            sock.sendall(wire.encode_frame(wire.OP["check"], {"user": asker.name}))
            sock.shutdown(socket.SHUT_WR)
            os.write(sent_write, b"x")
            os.write(out, wire.read_response(sock).status.encode())
            assert sock.recv(1) == b""  # and then the daemon closes the connection

    pid, results = wire.fork_as(asker.uid, asker.gid, (), ask_and_half_close)
    os.close(sent_write)
    assert os.read(sent_read, 1) == b"x"
    os.close(sent_read)
    time.sleep(0.5)  # the daemon has read the request; its lookup is under way
    assert daemon.stop(timeout=30) == 0
    answer = wire.read_all(results).decode()
    _, status = os.waitpid(pid, 0)
    assert answer == "notEnrolled" and status == 0, (answer, status, daemon.log())
    assert "stop reason=SIGTERM" in daemon.log()


# --- the configuration: one definition per key (issue 11) ----------------------------------------

EXAMPLE_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "config", "twofactord.conf")


def run_daemon_with_config(tmp_path, text, *args):
    path = tmp_path / "twofactord.conf"
    path.write_text(text)
    return subprocess.run([TWOFACTORD, "--config", str(path), *args], capture_output=True, text=True,
                          timeout=30), str(path)


@pytest.mark.parametrize("line, problem", [
    # The clock monitor used to clamp these silently (to 16 samples and a 0.05 s timeout).
    ("ntp_samples = 17", "ntp_samples must be a whole number from 1 to 16, got '17'"),
    ("ntp_timeout = 0.01", "ntp_timeout must be a number of seconds from 0.05 to 60, got '0.01'"),
    ("ntp_interval = 0.5", "ntp_interval must be a number of seconds from 1 to 86400, got '0.5'"),
    ("ntp_servers = pool.ntp.org bad:host:99", "ntp_servers must be"),
    ("ntp_servers = [time.example.org]:123", "ntp_servers must be"),
])
def test_check_config_refuses_what_the_daemon_would_not_run_with(tmp_path, line, problem):
    text = "# a comment\n" + line + "\n"
    check, path = run_daemon_with_config(tmp_path, text, "--check-config")
    assert check.returncode == 1, check
    assert f"twofactord: {path}:2: {problem}" in check.stderr, check.stderr
    start, _ = run_daemon_with_config(tmp_path, text)
    assert start.returncode == 78, start
    assert f"twofactord: {path}:2: {problem}" in start.stderr, start.stderr


@pytest.mark.parametrize("servers, shown", [
    ("[::1]:123", "[::1]"),
    ("::1", "[::1]"),
    ("127.0.0.1:12300 [::1]:4123 ntp.example.org", "127.0.0.1:12300 [::1]:4123 ntp.example.org"),
])
def test_ipv6_ntp_servers_are_accepted(tmp_path, servers, shown):
    check, _ = run_daemon_with_config(tmp_path, f"ntp_servers = {servers}\n", "--check-config")
    assert check.returncode == 0, check.stderr
    printed, _ = run_daemon_with_config(tmp_path, f"ntp_servers = {servers}\n", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert f"\nntp_servers = {shown}\n" in printed.stdout, printed.stdout


def test_the_example_config_is_what_the_daemon_prints_as_its_defaults():
    printed = subprocess.run([TWOFACTORD, "--print-default-config"], capture_output=True, timeout=30)
    assert printed.returncode == 0, printed.stderr
    with open(EXAMPLE_CONFIG, "rb") as f:
        example = f.read()
    assert printed.stdout == example, "regenerate config/twofactord.conf with twofactord --print-default-config"


def test_print_config_shows_every_key_with_its_effective_value(tmp_path):
    shown, _ = run_daemon_with_config(tmp_path, "max_failures = 7\nntp_interval = 60\nsocket_mode = 0660\n",
                                      "--print-config")
    assert shown.returncode == 0, shown.stderr
    values = dict(line.split(" = ", 1) for line in shown.stdout.splitlines())
    assert (values["max_failures"], values["ntp_interval"], values["socket_mode"]) == ("7", "60", "0660")
    # Every key the example documents, and no other.
    with open(EXAMPLE_CONFIG) as f:
        documented = [line[1:].split(" = ", 1)[0] for line in f
                      if line.startswith("#") and " = " in line and not line.startswith("# ")]
    assert sorted(values) == sorted(documented)
    assert len(values) == 48  # 26, HOTP 2, login policy 8, the 11 store keys (store, postgres_*), node_name


def test_running_out_of_descriptors_leaves_the_daemon_serving_once_they_are_free(tmp_path):
    """An attacker (here root, whose slots are many) holds more connections than the daemon has
    descriptors for (RLIMIT_NOFILE from prlimit). While they are held, new connections wait in the
    backlog and the daemon stays up; once they are closed, it accepts and answers again: no thread
    that accepts gave up for good while descriptors were short."""
    limit = 96
    d = Daemon(tmp_path)
    try:
        d.start(wrapper=["prlimit", f"--nofile={limit}:{limit}", "--"])
        held = []
        try:
            for _ in range(limit + 64):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    sock.connect(d.socket)
                except BlockingIOError:  # the backlog is full
                    sock.close()
                    break
                held.append(sock)
            deadline = time.time() + 10
            while len(os.listdir(f"/proc/{d.process.pid}/fd")) < limit - 2 and time.time() < deadline:
                time.sleep(0.05)
            assert len(os.listdir(f"/proc/{d.process.pid}/fd")) >= limit - 2, "the daemon never ran short"
            assert d.process.poll() is None
        finally:
            for sock in held:
                sock.close()
        deadline = time.time() + 15
        answer = None
        while time.time() < deadline:
            try:
                answer = d.request("check", {"user": "nobody-enrolled"}).status
                break
            except OSError:
                time.sleep(0.2)
        assert answer == "notEnrolled", d.log()[-2000:]
    finally:
        d.destroy()
