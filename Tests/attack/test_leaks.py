"""No leaks: every log a daemon of these tests wrote (its stderr, which is also its audit trail)
and its store as bytes (the SQLite database, WAL and shm files) are searched for every secret
(base32 text and raw bytes), TOTP code, recovery code and master key the tests used. The count
must be zero.

Run it after the other attack tests in the same pytest run (list it last on the command line):
attack_kit keeps the files and the used secrets of every daemon of the run. It also runs a
workload of its own (enrollments through the command line and the wire, logins through the PAM
module, recovery codes, wrong and replayed codes, a lockout, regeneration, disable), so it
proves something when run alone.
"""
import os
import re

import pytest

from attack_kit import (  # noqa: F401  (fixtures are found by name)
    EVIDENCE_DIR, USED, attack_daemon_factory, attack_make_user, enroll, evidence_files, helpers,
    remember_code, remember_enrollment, remember_recovery, request, totp,
)

PAM_MODULE = helpers.PAM_MODULE


# A code counts only as a token of its own (not inside a longer run of digits or letters, as in
# a timestamp or a pid): every run of digits is looked up in the set of used codes.
DIGIT_TOKEN = re.compile(rb"(?<![0-9A-Za-z])[0-9]+(?![0-9A-Za-z])")
# Numbers the daemon writes that are no input of anyone's: a pid or uid that happens to equal a
# used code is no leak.
PROCESS_IDS = re.compile(rb"(?<![0-9A-Za-z])(pid|uid)=[0-9]+")


def scan(files, used):
    """[(file, kind, value)] for every used value found in the files."""
    hits = []
    for path, data in files:
        for token in set(DIGIT_TOKEN.findall(PROCESS_IDS.sub(b"", data))) & used["code"]:
            hits.append((path, "code", token))
        for kind, values in used.items():
            if kind == "code":
                continue
            hits.extend((path, kind, value) for value in values if value and value in data)
    return hits


def test_the_scan_finds_a_planted_secret(tmp_path):
    """The scan can fail: a code, a recovery code and a secret written into a file are found."""
    planted = tmp_path / "log"
    planted.write_bytes(b"verify code=493726 rc=ABCD-EFGH x\x00RAWSECRETBYTES\x01 at 1764596412"
                        b" by=x(uid=264819) pid=736405\n")
    used = {"code": {b"493726", b"596412", b"264819", b"736405"}, "recovery": {b"ABCD-EFGH"},
            "secret": {b"RAWSECRETBYTES"}, "key": set()}
    hits = scan([(str(planted), planted.read_bytes())], used)
    # 596412 sits inside a timestamp, 264819 and 736405 are a uid and a pid: not hits.
    assert sorted(kind for _, kind, _ in hits) == ["code", "recovery", "secret"], hits


def pam_login(daemon, user, answer):
    service = helpers.PamService(helpers.unique_name("tfleak"), [
        f"auth required {PAM_MODULE} socket={daemon.socket}",
        "auth required pam_permit.so",
        "account required pam_permit.so",
    ])
    try:
        return helpers.pamtester(service.name, user, [answer])
    finally:
        service.remove()


def test_a_workload_of_enrollments_and_logins(attack_daemon_factory, attack_make_user):
    """Everything a secret or code passes through, once, on a daemon whose files the scan reads."""
    daemon = attack_daemon_factory(max_failures=3)
    alice, bob = attack_make_user(prefix="tflk"), attack_make_user(prefix="tflk")

    # Enrollment through the command line, as the person does it.
    enabled = helpers.enable_with_stdin(alice.name, socket=daemon.socket)
    a = remember_enrollment(enabled.enrollment())
    remember_code(a.codes.at_step(a.codes.last_step))
    # And through the wire, as root; a cancelled one too.
    b = enroll(daemon, bob.name)
    assert request(daemon, "resetAccount", {"user": bob.name}).status == "ok"
    begun = request(daemon, "enrollBegin", {"user": bob.name})
    assert request(daemon, "enrollCancel", {"user": bob.name}).status == "ok"
    b = enroll(daemon, bob.name)

    # Logins: through the PAM module when it is built, and over the wire.
    code = remember_code(a.codes.next_code())
    if os.path.exists(PAM_MODULE):
        run = pam_login(daemon, alice.name, code)
        assert run.returncode == 0, run.stderr
    else:
        assert request(daemon, "verify", {"user": alice.name, "code": code}).status == "accepted"
    assert request(daemon, "verify", {"user": alice.name, "code": code}).status == "codeReused"
    recovery = remember_recovery(a.recovery_codes[0])
    assert request(daemon, "verify", {"user": alice.name, "code": recovery}).status == "accepted"
    assert request(daemon, "verify", {"user": alice.name, "code": recovery}).status == "codeReused"
    # Wrong codes up to a lockout, then a right one refused.
    for _ in range(3):
        request(daemon, "verify", {"user": bob.name, "code": b.codes.wrong_code()})
    locked = request(daemon, "verify", {"user": bob.name, "code": totp(b.secret)})
    assert locked.status == "lockedOut", locked
    assert request(daemon, "unlockAccount", {"user": bob.name}).status == "ok"
    # Management with codes: regenerate (new codes recorded), then disable.
    regenerated = request(daemon, "regenerateRecoveryCodes",
                          {"user": alice.name, "code": a.recovery_codes[1]})
    assert regenerated.status == "ok", regenerated
    assert request(daemon, "verify",
                   {"user": alice.name, "code": regenerated["recoveryCode"][0]}).status == "accepted"
    assert request(daemon, "disable", {"user": bob.name, "code": b.recovery_codes[0]}).status == "ok"
    assert begun["secret"] and a.secret and b.secret
    daemon.restart()  # a checkpoint and a fresh start: the WAL is folded into the database
    assert request(daemon, "status", {"user": alice.name}).status == "ok"


def test_no_secret_code_or_recovery_code_in_any_log_or_store():
    files = evidence_files()
    assert files, f"no daemon files kept in {EVIDENCE_DIR}"
    logs = [p for p, _ in files if p.endswith(".log")]
    stores = [p for p, _ in files if not p.endswith(".log")]
    hits = scan(files, USED)
    sizes = {kind: len(values) for kind, values in USED.items()}
    print(f"\nleak scan: {len(logs)} logs, {len(stores)} store files "
          f"({sum(len(d) for _, d in files)} bytes) searched for {sizes} values: {len(hits)} found")
    for path, kind, value in hits[:20]:
        print(f"  LEAK {kind} {value!r} in {path}")
    assert len(logs) >= 1 and any(p.endswith("twofactor.db") for p in stores), (logs, stores)
    assert USED["secret"] and USED["code"] and USED["recovery"]
    assert hits == [], hits[:20]
