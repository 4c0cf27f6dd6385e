"""The privilege matrix: every operation of docs/PROTOCOL.md against every kind of caller, over
the real socket of a real twofactord, with real users (useradd) and a real admin group.

The expected answers are written from docs/PROTOCOL.md ("Who may ask", "Operations"), not from
the daemon's code. The target account is always OWNER's. A refused request must also leave the
account as it was: a refused verify does not consume the code, a refused disable disables
nothing.
"""
import pytest

from attack_kit import (  # noqa: F401  (fixtures are found by name)
    Daemon, ThrowawayGroup, ThrowawayUser, enroll, finish_daemon, helpers, remember_code,
    request, totp,
)

OPS = ["check", "verify", "enrollBegin", "enrollConfirm", "enrollCancel", "regenerateRecoveryCodes",
       "disable", "status", "listAccounts", "resetAccount", "unlockAccount", "clockStatus", "adminEnroll",
       "health"]
CALLERS = ["root", "owner", "other", "admin", "nopasswd"]

Y, N = True, False
# PROTOCOL.md, "Who may ask": root verifies any account, others only their own; root and the
# admin group manage anyone's enrollment and use the admin operations (list, reset, unlock,
# clock); a uid with no passwd entry owns no account. check and status read an account's
# enrollment, which its owner, root and the admin group may do.
#            op                         root owner other admin nopasswd
MATRIX = {
    "check":                   dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "verify":                  dict(root=Y, owner=Y, other=N, admin=N, nopasswd=N),
    "enrollBegin":             dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "enrollConfirm":           dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "enrollCancel":            dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "regenerateRecoveryCodes": dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "disable":                 dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "status":                  dict(root=Y, owner=Y, other=N, admin=Y, nopasswd=N),
    "listAccounts":            dict(root=Y, owner=N, other=N, admin=Y, nopasswd=N),
    "resetAccount":            dict(root=Y, owner=N, other=N, admin=Y, nopasswd=N),
    "unlockAccount":           dict(root=Y, owner=N, other=N, admin=Y, nopasswd=N),
    "clockStatus":             dict(root=Y, owner=N, other=N, admin=Y, nopasswd=N),
    # Setting a key the caller chose is root's alone (PROTOCOL.md, adminEnroll).
    "adminEnroll":             dict(root=Y, owner=N, other=N, admin=N, nopasswd=N),
    # The store's state and this node's name: an administrator's view, like clockStatus.
    "health":                  dict(root=Y, owner=N, other=N, admin=Y, nopasswd=N),
}
# The answer of an allowed request, in the state the cell prepares (PROTOCOL.md, "Operations").
ALLOWED_ANSWER = {
    "check": "enrolled", "verify": "accepted", "enrollBegin": "ok", "enrollConfirm": "ok",
    "enrollCancel": "ok", "regenerateRecoveryCodes": "ok", "disable": "ok", "status": "ok",
    "listAccounts": "ok", "resetAccount": "ok", "unlockAccount": "ok", "clockStatus": "ok",
    "adminEnroll": "ok", "health": "ok",
}


class Scene:
    """One private daemon whose admin_group is a throwaway group, and the five callers."""

    def __init__(self):
        self.made = []
        self.group = self.keep(ThrowawayGroup("tfadm"), ThrowawayGroup.remove)
        self.owner = self.keep(ThrowawayUser("tfown"), ThrowawayUser.remove)
        self.other = self.keep(ThrowawayUser("tfoth"), ThrowawayUser.remove)
        self.admin = self.keep(ThrowawayUser("tfadu", groups=[self.group.name]), ThrowawayUser.remove)
        self.nopasswd_uid = helpers.unused_uid()
        self.daemon = Daemon(None, {"admin_group": self.group.name})
        self.keep(self.daemon, finish_daemon)
        self.daemon.start()
        self.callers = {
            "root": None,
            "owner": (self.owner.uid, self.owner.gid, []),
            "other": (self.other.uid, self.other.gid, []),
            "admin": (self.admin.uid, self.admin.gid, [self.group.gid]),
            "nopasswd": (self.nopasswd_uid, self.nopasswd_uid, []),
        }

    def keep(self, thing, finish):
        self.made.append((thing, finish))
        return thing

    def close(self):
        for thing, finish in reversed(self.made):
            finish(thing)

    def root(self, op, fields=None):
        return request(self.daemon, op, fields)

    def status(self, user):
        answer = self.root("status", {"user": user})
        assert answer.status == "ok", answer
        return answer

    def fresh(self, user, enrolled=True):
        """`user`'s account as new: reset by root (root's own by the admin: nobody resets their
        own account), then enrolled unless enrolled=False."""
        by = self.callers["admin"] if user == "root" else None
        reset = request(self.daemon, "resetAccount", {"user": user}, caller=by)
        assert reset.status in ("ok", "notEnrolled"), reset
        self.root("enrollCancel", {"user": user})
        return enroll(self.daemon, user) if enrolled else None


@pytest.fixture(scope="module")
def scene():
    s = Scene.__new__(Scene)
    s.made = []
    try:
        Scene.__init__(s)
        yield s
    finally:
        s.close()


def prepare(scene, op):
    """Puts OWNER's account in the state `op` needs and returns (fields, what to check after a
    refusal)."""
    user = scene.owner.name
    if op == "enrollBegin":
        scene.fresh(user, enrolled=False)
        return {"user": user}, dict(isEnrolled=False, pending=False)
    if op in ("enrollConfirm", "enrollCancel"):
        scene.fresh(user, enrolled=False)
        begun = scene.root("enrollBegin", {"user": user})
        assert begun.status == "ok", begun
        fields = {"user": user}
        if op == "enrollConfirm":
            fields["code"] = totp(begun["secret"])
        return fields, dict(isEnrolled=False, pending=True)
    if op == "adminEnroll":
        scene.fresh(user, enrolled=False)
        return {"user": user, "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}, dict(isEnrolled=False, pending=False)
    e = scene.fresh(user)
    unchanged = dict(isEnrolled=True, failures=0, recoveryCodesLeft=8)
    if op == "verify":
        # The next step's code: enrollment used the current one.
        return {"user": user, "code": remember_code(e.codes.next_code())}, unchanged
    if op in ("regenerateRecoveryCodes", "disable"):
        # Every caller brings a valid code: only the caller decides the answer.
        return {"user": user, "code": e.recovery_codes[0]}, unchanged
    if op in ("listAccounts", "clockStatus", "health"):
        return {}, unchanged
    return {"user": user}, unchanged


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op", OPS)
def test_privilege_matrix(scene, op, caller):
    fields, unchanged = prepare(scene, op)
    answer = request(scene.daemon, op, fields, caller=scene.callers[caller])
    if MATRIX[op][caller]:
        assert answer.status == ALLOWED_ANSWER[op], f"{caller} {op}: {answer!r}"
        return
    assert answer.status == "permissionDenied", f"{caller} {op} must be refused: {answer!r}"
    # Refused before anything was judged or changed.
    status = scene.status(scene.owner.name)
    for key, value in unchanged.items():
        assert status[key] == value, f"{caller} {op} changed {key}: {status!r}"
    if op == "verify":
        again = scene.root("verify", fields)
        assert again.status == "accepted", f"the code {caller} sent was consumed: {again!r}"


def test_matrix_covers_every_operation_of_the_protocol():
    import twofactor_wire as wire
    assert sorted(MATRIX) == sorted(wire.OP) == sorted(OPS)
    assert all(sorted(row) == sorted(CALLERS) for row in MATRIX.values())


# Admin powers are for other people's accounts (PROTOCOL.md): on its own enrollment every caller,
# root and admins included, needs a current code for regenerate and disable, and may not reset or
# unlock it.
OWN_ACCOUNT = [
    # (who, op, code?, expected)
    ("admin", "resetAccount", False, "permissionDenied"),
    ("admin", "unlockAccount", False, "permissionDenied"),
    ("admin", "regenerateRecoveryCodes", False, "codeRequired"),
    ("admin", "disable", False, "codeRequired"),
    ("admin", "verify", True, "accepted"),
    ("admin", "regenerateRecoveryCodes", True, "ok"),
    ("root", "resetAccount", False, "permissionDenied"),
    ("root", "unlockAccount", False, "permissionDenied"),
    ("root", "regenerateRecoveryCodes", False, "codeRequired"),
    ("root", "disable", False, "codeRequired"),
    ("root", "disable", True, "ok"),
    ("owner", "regenerateRecoveryCodes", False, "codeRequired"),
    ("owner", "disable", False, "codeRequired"),
    ("owner", "resetAccount", False, "permissionDenied"),
]


@pytest.mark.parametrize("who,op,with_code,expected", OWN_ACCOUNT)
def test_own_account(scene, who, op, with_code, expected):
    user = {"admin": scene.admin.name, "root": "root", "owner": scene.owner.name}[who]
    e = scene.fresh(user)
    fields = {"user": user}
    if with_code:
        fields["code"] = remember_code(e.codes.next_code()) if op == "verify" else e.recovery_codes[0]
    answer = request(scene.daemon, op, fields, caller=scene.callers[who])
    assert answer.status == expected, f"{who} {op} on its own account: {answer!r}"
    if expected in ("permissionDenied", "codeRequired"):
        status = scene.status(user)
        assert status["isEnrolled"] and status["recoveryCodesLeft"] == 8, status
    scene.fresh(user, enrolled=False)


# --- the files: modes of what the daemon creates, and refusal of unsafe ones ------------------

def mode(path):
    import os
    return os.stat(path).st_mode & 0o7777


def test_modes_of_the_files_the_daemon_creates(scene):
    import os
    d = scene.daemon
    scene.fresh(scene.owner.name)  # something in the store, so the WAL exists
    assert mode(d.socket) == 0o666, oct(mode(d.socket))  # everyone may ask; SO_PEERCRED decides
    assert mode(d.key_file) == 0o600, oct(mode(d.key_file))
    assert mode(d.state_dir) == 0o700, oct(mode(d.state_dir))
    names = sorted(os.listdir(d.state_dir))
    assert "twofactor.db" in names, names
    for name in names:
        path = os.path.join(d.state_dir, name)
        assert mode(path) & 0o077 == 0, f"{name} is open to group or others: {oct(mode(path))}"
    for path in [d.key_file, d.state_dir] + [os.path.join(d.state_dir, n) for n in names]:
        assert os.stat(path).st_uid == os.geteuid(), path


def start_refused(daemon):
    """Starts `daemon` and returns (exit status, log) of a daemon that must not start."""
    try:
        daemon.start(timeout=15)
    except RuntimeError as error:
        return daemon.process.returncode, str(error)
    finally:
        pass
    raise AssertionError(f"twofactord started with an unsafe file:\n{daemon.log()}")


def write_key(path, file_mode):
    import os
    import secrets
    with open(path, "wb") as f:
        f.write(secrets.token_bytes(32))
    os.chmod(path, file_mode)


def unsafe_key_mode(d, _other):
    write_key(d.key_file, 0o644)
    return "key file"


def unsafe_key_group_readable(d, _other):
    write_key(d.key_file, 0o640)
    return "key file"


def unsafe_key_symlink(d, _other):
    import os
    target = d.key_file + ".real"
    write_key(target, 0o600)
    os.symlink(target, d.key_file)
    return "key file"


def unsafe_key_owner(d, other):
    import os
    write_key(d.key_file, 0o600)
    os.chown(d.key_file, other.uid, other.gid)  # its owner could read or replace the key
    return "key file"


def unsafe_state_world_writable(d, _other):
    import os
    os.mkdir(d.state_dir)
    os.chmod(d.state_dir, 0o777)  # anyone may have planted the database in it
    return "state_directory"


def unsafe_state_group_writable(d, _other):
    import os
    os.mkdir(d.state_dir)
    os.chmod(d.state_dir, 0o770)
    return "state_directory"


def unsafe_state_owner(d, other):
    import os
    os.mkdir(d.state_dir, 0o700)
    os.chown(d.state_dir, other.uid, other.gid)
    return "state_directory"


def unsafe_config_world_writable(d, _other):
    import os
    d.write_config()
    os.chmod(d.config_path, 0o666)  # anyone could point key_file or admin_group elsewhere
    return "twofactord.conf"


def unsafe_config_group_writable(d, _other):
    import os
    d.write_config()
    os.chmod(d.config_path, 0o664)
    return "twofactord.conf"


def unsafe_config_owner(d, other):
    import os
    d.write_config()
    os.chmod(d.config_path, 0o644)
    os.chown(d.config_path, other.uid, other.gid)
    return "twofactord.conf"


UNSAFE = [unsafe_key_mode, unsafe_key_group_readable, unsafe_key_symlink, unsafe_key_owner,
          unsafe_state_world_writable, unsafe_state_group_writable, unsafe_state_owner,
          unsafe_config_world_writable, unsafe_config_group_writable, unsafe_config_owner]


@pytest.mark.parametrize("make_unsafe", UNSAFE, ids=lambda f: f.__name__)
def test_the_daemon_refuses_to_start_with_an_unsafe_file(scene, make_unsafe):
    import os
    d = Daemon(None)
    try:
        if make_unsafe.__name__.startswith("unsafe_config"):
            # Daemon.start rewrites the config; keep the unsafe one.
            d.write_config = lambda original=d.write_config: (
                None if os.path.exists(d.config_path) else original())
        what = make_unsafe(d, scene.other)
        status, log = start_refused(d)
        assert status == 78, f"exit {status} (78: a configuration problem):\n{log}"
        assert what in log, log
        assert not os.path.exists(d.socket), "it must not listen"
    finally:
        finish_daemon(d)


def test_a_safe_set_of_files_made_beforehand_is_accepted(scene):
    """The refusals above are about the unsafe bit, not about files made before the daemon."""
    import os
    d = Daemon(None)
    try:
        write_key(d.key_file, 0o600)
        os.mkdir(d.state_dir, 0o700)
        d.start()
        assert d.request("check", {"user": scene.owner.name}).status == "notEnrolled"
    finally:
        finish_daemon(d)
