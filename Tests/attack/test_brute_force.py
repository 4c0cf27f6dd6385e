"""Brute force: many wrong guesses against one account, one after another and in parallel, over
the real socket as root (the PAM module's path: sshd asks as root). Exactly max_failures guesses
are judged (wrongCode); every later one is refused unjudged (lockedOut), a right code too; and
the audit log (the daemon's stderr) shows each guess and the lockout.

Short form: TWOFACTOR_ATTACK_GUESSES guesses per run (default 1000). Long form:
TWOFACTOR_ATTACK_LONG=1 (10,000 guesses). The figures are printed (run pytest with -s).
"""
import os
import re
import secrets
import subprocess
import threading
import time

import pytest

from attack_kit import (  # noqa: F401  (fixtures are found by name)
    attack_daemon_factory, attack_make_user, enroll, remember_code, request, totp,
)
import twofactor_wire as wire

LONG = os.environ.get("TWOFACTOR_ATTACK_LONG") == "1"
GUESSES = 10_000 if LONG else int(os.environ.get("TWOFACTOR_ATTACK_GUESSES", "1000"))
MAX_FAILURES = 5
WORKERS = 16
# One lockout longer than the whole run, so the count of judged guesses is exact.
POLICY = dict(max_failures=MAX_FAILURES, lockout_seconds=3600, lockout_max_seconds=3600)


def wrong_guesses(secret, count):
    """`count` different six-digit codes, none valid within 20 steps of now (oathtool)."""
    period = 30
    first = (int(time.time()) // period - 20) * period
    out = subprocess.run(["oathtool", "--totp", "-b", "-d", "6", "-w", "40", "-N", f"@{first}", secret],
                         check=True, capture_output=True, text=True)
    near = set(out.stdout.split())
    chosen = set()
    while len(chosen) < count:
        code = f"{secrets.randbelow(1_000_000):06d}"
        if code not in near:
            chosen.add(code)
    return [remember_code(code) for code in chosen]


def guess(daemon, user, code):
    """One verify as root on a connection of its own, as the PAM module sends it."""
    answer = wire.request(daemon.socket, "verify", {"user": user, "code": code, "service": "attack"})
    return answer


def audit_counts(log, user):
    verify = re.findall(rf"verify account={re.escape(user)} .* result=(\w+) reason=([\w-]+)", log)
    lockouts = re.findall(rf"lockout account={re.escape(user)} until=\S+ failures=(\d+)", log)
    return verify, lockouts


def attack(daemon, user, codes, parallel):
    answers = []
    lock = threading.Lock()
    started = time.monotonic()
    if not parallel:
        for code in codes:
            answers.append(guess(daemon, user, code).status)
    else:
        queue = list(codes)

        def work():
            while True:
                with lock:
                    if not queue:
                        return
                    code = queue.pop()
                status = guess(daemon, user, code).status
                with lock:
                    answers.append(status)

        threads = [threading.Thread(target=work) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return answers, time.monotonic() - started


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_brute_force_is_judged_max_failures_times_then_locked(attack_daemon_factory, attack_make_user,
                                                             parallel):
    daemon = attack_daemon_factory(**POLICY)
    victim = attack_make_user(prefix="tfbf")
    e = enroll(daemon, victim.name)
    codes = wrong_guesses(e.secret, GUESSES)

    answers, seconds = attack(daemon, victim.name, codes, parallel)

    counts = {s: answers.count(s) for s in set(answers)}
    judged = counts.get("wrongCode", 0)
    print(f"\nbrute force ({'parallel x%d' % WORKERS if parallel else 'sequential'}): {len(answers)} "
          f"guesses in {seconds:.1f}s ({len(answers) / seconds:.0f}/s), answers {counts}; judged "
          f"{judged}, max_failures {MAX_FAILURES}")
    assert len(answers) == GUESSES
    assert set(counts) <= {"wrongCode", "lockedOut"}, counts
    assert judged == MAX_FAILURES, counts
    assert counts.get("lockedOut", 0) == GUESSES - MAX_FAILURES, counts
    if not parallel:
        assert answers[:MAX_FAILURES] == ["wrongCode"] * MAX_FAILURES, answers[:MAX_FAILURES + 1]

    # A right code is refused while locked, and not consumed by the refusal.
    right = remember_code(e.codes.next_code())  # enrollment used the current step's code
    refused = guess(daemon, victim.name, right)
    assert refused.status == "lockedOut" and refused.get("lockedUntil", 0) > time.time(), refused
    status = request(daemon, "status", {"user": victim.name})
    assert status["failures"] == MAX_FAILURES and status.get("lockedUntil", 0) > time.time(), status

    # The audit log shows the attack: every guess a rejected line, the judged ones as wrong
    # codes, the rest as locked-out, and one lockout line.
    verify, lockouts = audit_counts(daemon.log(), victim.name)
    results = [r for r, _ in verify]
    reasons = {}
    for _, reason in verify:
        reasons[reason] = reasons.get(reason, 0) + 1
    print(f"audit log: {len(verify)} verify lines {reasons}, lockout lines {lockouts}")
    assert results.count("rejected") == GUESSES + 1, reasons  # + the right code while locked
    assert reasons.get("locked-out", 0) == GUESSES + 1 - MAX_FAILURES, reasons
    assert lockouts == [str(MAX_FAILURES)], lockouts

    # After an administrator's unlock the same right code is accepted: the refusal never judged
    # it (window 1 keeps the next step's code valid for a minute; the run is shorter).
    assert request(daemon, "unlockAccount", {"user": victim.name}).status == "ok"
    assert guess(daemon, victim.name, right).status == "accepted"
