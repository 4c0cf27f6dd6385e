"""Peer credentials decide who may do what (twofactord, docs/PROTOCOL.md "Who may ask").

Requests are made from forked children that dropped to a throwaway user's uid, so the daemon's
SO_PEERCRED sees a real non-root identity. Run as root:
    TWOFACTORD=.build/debug/twofactord /usr/bin/python3 -m pytest Tests/integration/test_daemon.py
"""
import grp
import json
import os
import subprocess
import time

import pytest

import twofactor_wire as wire
from helpers import TWOFACTORD, Daemon, ThrowawayGroup, totp


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
    assert denied == [f"list account=- by={alice.name}(uid={alice.uid}) result=denied reason=permission-denied"]


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


def test_primary_group_counts_as_admin_membership(daemon_factory, make_user, admin_group):
    daemon = daemon_factory(admin_group=admin_group.name)
    admin = make_user()
    subprocess.run(["usermod", "-g", admin_group.name, admin.name], check=True, capture_output=True)
    answer = daemon.request("listAccounts", as_uid=admin.uid, as_gid=admin_group.gid)
    assert answer.status == "ok", answer


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
