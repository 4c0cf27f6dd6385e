"""The kit of the privilege-matrix, brute-force and leak tests (test_privileges.py,
test_brute_force.py, test_leaks.py). It builds on the integration kit (Tests/integration/helpers.py:
Daemon, ThrowawayUser, ThrowawayGroup, enroll, totp, twofactor_wire) and adds one thing: a
record of every secret, code and recovery code these tests hand to a daemon, and of every file
that daemon wrote, so test_leaks.py can grep them all at the end of the run.

Fixtures (prefixed `attack_` so they do not clash with Tests/attack/conftest.py):
  attack_daemon_factory  starts private daemons (config overrides as keyword arguments); their
                         log and store files are copied to the evidence directory before removal
  attack_make_user       throwaway Unix users
  attack_admin_group     a throwaway group, to be set as the daemon's admin_group

Paths come from the environment, as in Tests/integration: TWOFACTORD, TWOFACTOR_CLI.
"""
import atexit
import base64
import os
import shutil
import sys
import tempfile

import pytest

INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
sys.path.insert(0, os.path.normpath(INTEGRATION))

import helpers  # noqa: E402
import twofactor_wire as wire  # noqa: E402
from helpers import Daemon, ThrowawayGroup, ThrowawayUser, factory  # noqa: E402,F401  (test_privileges imports Daemon from here)

# --- what the tests used, for test_leaks.py -----------------------------------------------------

# Shared by every module of one pytest run: the secrets handed out and the files daemons wrote.
# TWOFACTOR_ATTACK_EVIDENCE names a directory to keep them in (default: a fresh one under /tmp).
EVIDENCE_DIR = os.environ.get("TWOFACTOR_ATTACK_EVIDENCE")
if EVIDENCE_DIR:
    os.makedirs(EVIDENCE_DIR, exist_ok=True)
else:
    # Copies of keys and stores: removed when the run ends.
    EVIDENCE_DIR = tempfile.mkdtemp(prefix="tf-attack-evidence-")
    atexit.register(shutil.rmtree, EVIDENCE_DIR, True)

# kind -> set of bytes: "secret" (base32 text and raw key bytes), "code" (TOTP codes, right or
# wrong), "recovery" (recovery codes as shown and in normal form), "key" (master key bytes).
USED = {"secret": set(), "code": set(), "recovery": set(), "key": set()}


def remember_secret(secret_b32):
    USED["secret"].add(secret_b32.encode())
    padded = secret_b32 + "=" * (-len(secret_b32) % 8)
    USED["secret"].add(base64.b32decode(padded))


def remember_code(code):
    USED["code"].add(code.encode() if isinstance(code, str) else code)
    return code


def remember_recovery(code):
    USED["recovery"].add(code.encode())
    normal = code.replace("-", "").replace(" ", "")
    USED["recovery"].update({normal.upper().encode(), normal.lower().encode()})
    return code


def remember_enrollment(enrollment):
    remember_secret(enrollment.secret)
    for code in enrollment.recovery_codes:
        remember_recovery(code)
    return enrollment


def remember_response(response):
    """Records what a daemon answer hands out (secrets, recovery codes)."""
    if "secret" in response:
        remember_secret(response["secret"])
    for code in response.get("recoveryCode", []):
        remember_recovery(code)
    return response


def totp(secret_b32, at=None):
    return remember_code(helpers.totp(secret_b32, at=at))


def enroll(daemon, user, at=None):
    """helpers.enroll as root, with everything it used recorded."""
    enrollment = remember_enrollment(daemon.enroll(user, at=at))
    remember_code(enrollment.codes.at_step(enrollment.codes.last_step))
    return enrollment


def request(daemon, op, fields=None, caller=None):
    """One wire request, as root (caller None) or as caller = (uid, gid, groups); codes in the
    request and secrets in the answer are recorded."""
    fields = dict(fields or {})
    if "code" in fields:
        remember_code(fields["code"])
    if caller is None:
        answer = daemon.request(op, fields)
    else:
        uid, gid, groups = caller
        answer = daemon.request(op, fields, as_uid=uid, as_gid=gid, groups=groups)
    return remember_response(answer)


# --- the daemon ---------------------------------------------------------------------------------

def keep_evidence(daemon):
    """Copies the daemon's log, store (db, WAL, shm) and key to EVIDENCE_DIR, and records the key."""
    target = tempfile.mkdtemp(prefix="daemon-", dir=EVIDENCE_DIR)
    for path in (daemon.log_path, daemon.key_file):
        if os.path.exists(path):
            shutil.copy(path, target)
    if os.path.isdir(daemon.state_dir):
        for name in os.listdir(daemon.state_dir):
            shutil.copy(os.path.join(daemon.state_dir, name), target)
    try:
        with open(daemon.key_file, "rb") as f:
            key = f.read()
        if key:
            USED["key"].update({key, key.hex().encode(), base64.b64encode(key)})
    except OSError:
        pass


def evidence_files():
    """Every file kept so far: [(path, bytes)]."""
    found = []
    for root, _dirs, names in os.walk(EVIDENCE_DIR):
        for name in names:
            if name.endswith(".key"):
                continue  # the key file is the key: it is not evidence of a leak
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found.append((path, f.read()))
    return found


def finish_daemon(daemon):
    try:
        daemon.stop()
    finally:
        try:
            keep_evidence(daemon)
        finally:
            daemon.destroy()


@pytest.fixture
def attack_daemon_factory(tmp_path_factory):
    """attack_daemon_factory(max_failures=3, ...) -> a started private Daemon."""
    yield from helpers.daemons(tmp_path_factory, finish=finish_daemon)


@pytest.fixture
def attack_make_user():
    yield from factory(ThrowawayUser, ThrowawayUser.remove)


@pytest.fixture
def attack_admin_group():
    group = ThrowawayGroup("tfadm")
    try:
        yield group
    finally:
        group.remove()
