"""Races against the real twofactord: many verifications of one code at the same moment, and
verifications racing a recovery-code regeneration or a disable (issue 12, "Races").

Each race is repeated (TWOFACTOR_ATTACK_REPEAT, default 5; 100 in the long form); every client
has its own connection. Accounts are made by root over the wire with made-up names (root may
manage any name), with lockout out of the way so every attempt is judged (race_kit.ATTACK_CONFIG)."""
import random
import time
from collections import Counter

from race_kit import Shot, count, fire, jitter
from figures import record
from helpers import unique_name

REPEAT = count("TWOFACTOR_ATTACK_REPEAT", 5, 100)
CLIENTS = 100
SPREAD = 0.03   # seconds over which the racing requests of one round are spread


def _verify(user, code, label=None, delay=0.0):
    return Shot(label if label is not None else code, "verify", {"user": user, "code": code}, delay)


def test_one_totp_code_is_accepted_once_among_100_concurrent_verifications(race_daemon):
    began = time.monotonic()
    for _ in range(REPEAT):
        user = unique_name("tfr")
        enrollment = race_daemon.enroll(user)
        code = enrollment.code(1)   # a step newer than the confirming one: valid once
        shots = fire(race_daemon.socket, [_verify(user, code, i) for i in range(CLIENTS)])
        statuses = Counter(shot.status for shot in shots)
        assert statuses == {"accepted": 1, "codeReused": CLIENTS - 1}, statuses
        assert race_daemon.request("verify", {"user": user, "code": code}).status == "codeReused"
    record(f"races: {REPEAT} x {CLIENTS} concurrent verifies of one TOTP code, "
           f"1 accepted each ({time.monotonic() - began:.1f} s)")


def test_one_recovery_code_is_accepted_once_among_100_concurrent_verifications(race_daemon):
    began = time.monotonic()
    for _ in range(REPEAT):
        user = unique_name("tfr")
        enrollment = race_daemon.enroll(user)
        code = enrollment.recovery_codes[0]
        shots = fire(race_daemon.socket, [_verify(user, code, i) for i in range(CLIENTS)])
        statuses = Counter(shot.status for shot in shots)
        assert statuses == {"accepted": 1, "codeReused": CLIENTS - 1}, statuses
        accepted = next(shot for shot in shots if shot.status == "accepted")
        assert accepted.response["recoveryCodesLeft"] == 7, accepted.response
        assert race_daemon.request("verify", {"user": user, "code": code}).status == "codeReused"
    record(f"races: {REPEAT} x {CLIENTS} concurrent verifies of one recovery code, "
           f"1 accepted each ({time.monotonic() - began:.1f} s)")


def _race_against(daemon, control_op, tries_per_code=4):
    """One round: a fresh account; every old recovery code (and one TOTP code) is sent
    `tries_per_code` times, spread over SPREAD seconds, while `control_op` (as root) is sent at a
    random moment in the same spread. Returns (user, enrollment, control shot, the verify shots
    of the codes the control ends: the old recovery codes, and for a disable the TOTP code)."""
    user = unique_name("tfr")
    enrollment = daemon.enroll(user)
    totp = enrollment.code(1)
    codes = enrollment.recovery_codes + [totp]
    shots = [_verify(user, code, delay=jitter(SPREAD)) for code in codes for _ in range(tries_per_code)]
    control = Shot(control_op, control_op, {"user": user}, jitter(SPREAD))
    fire(daemon.socket, shots + [control])
    assert control.status == "ok", control
    assert all(not shot.status.startswith("error") for shot in shots), [s for s in shots if s.status.startswith("error")]
    # A regeneration leaves the TOTP code valid; only a disable ends it too.
    ended = set(enrollment.recovery_codes) | ({totp} if control_op == "disable" else set())
    late = [shot for shot in shots if shot.status == "accepted" and shot.sent > control.answered
            and shot.label in ended]
    assert not late, f"old codes accepted although sent after {control_op} had answered: {late}"
    accepted = Counter(shot.label for shot in shots if shot.status == "accepted")
    assert all(n == 1 for n in accepted.values()), f"a code accepted twice: {accepted}"
    return user, enrollment, control, [shot for shot in shots if shot.label in ended]


def _interleaving(control, shots):
    """(accepted old codes, verifies sent after the control answered, accepted old codes whose
    answer arrived after the control's although sent before it): the first two nonzero over a
    run show the race really interleaved. The third is legitimate: a verify sent earlier may be
    committed first and still be answered later (answers leave on several threads)."""
    won = sum(1 for shot in shots if shot.status == "accepted")
    after = sum(1 for shot in shots if shot.sent > control.answered)
    overtaken = sum(1 for shot in shots if shot.status == "accepted" and shot.answered > control.answered)
    return won, after, overtaken


def test_no_old_recovery_code_is_accepted_after_regeneration_answered(race_daemon):
    began = time.monotonic()
    won = after = overtaken = 0
    for _ in range(REPEAT):
        user, enrollment, control, shots = _race_against(race_daemon, "regenerateRecoveryCodes")
        new_codes = control.response["recoveryCode"]
        assert len(new_codes) == 8 and not set(new_codes) & set(enrollment.recovery_codes), control.response
        for old in enrollment.recovery_codes:
            answer = race_daemon.request("verify", {"user": user, "code": old})
            # used or not, every old code went with the old set
            assert answer.status == "wrongCode", (old, answer)
        assert race_daemon.request("verify", {"user": user, "code": new_codes[0]}).status == "accepted"
        w, a, o = _interleaving(control, shots)
        won, after, overtaken = won + w, after + a, overtaken + o
    record(f"races: {REPEAT} rounds of 36 verifies racing a regeneration: {won} old codes won before it, "
           f"{after} verifies sent after its answer, none accepted; {overtaken} answered after it though sent before ({time.monotonic() - began:.1f} s)")


def test_no_code_is_accepted_after_disable_answered(race_daemon):
    began = time.monotonic()
    won = after = overtaken = 0
    for _ in range(REPEAT):
        user, enrollment, control, shots = _race_against(race_daemon, "disable")
        for code in enrollment.recovery_codes + [enrollment.code(1), enrollment.code(0)]:
            answer = race_daemon.request("verify", {"user": user, "code": code})
            assert answer.status == "notEnrolled", (code, answer)
        w, a, o = _interleaving(control, shots)
        won, after, overtaken = won + w, after + a, overtaken + o
    record(f"races: {REPEAT} rounds of 36 verifies racing a disable: {won} codes won before it, "
           f"{after} verifies sent after its answer, none accepted; {overtaken} answered after it though sent before ({time.monotonic() - began:.1f} s)")


def test_a_code_given_as_proof_for_a_change_is_spent_once_among_concurrent_verifications(race_daemon):
    """The same code sent 99 (or 3) times to verify and once as the proof of possession of a
    regeneration or a disable (root may give one; it is then checked and spent like any other):
    exactly one of the requests succeeds."""
    began = time.monotonic()
    changes = Counter()
    for round in range(REPEAT):
        op = ("regenerateRecoveryCodes", "disable")[round % 2]
        user = unique_name("tfr")
        enrollment = race_daemon.enroll(user)
        code = enrollment.code(1) if round % 4 < 2 else enrollment.recovery_codes[0]
        change = Shot(op, op, {"user": user, "code": code})
        # Against 99 verifies the change rarely wins; against 3 it often does: both must hold.
        shots = [_verify(user, code, i) for i in range(CLIENTS - 1 if (round // 4) % 2 == 0 else 3)]
        shots.insert(random.randrange(len(shots) + 1), change)   # threads start in list order
        fire(race_daemon.socket, shots)
        statuses = Counter(shot.status for shot in shots)
        wins = statuses["accepted"] + (change.status == "ok")
        assert wins == 1, statuses
        losing = {"codeReused", "notEnrolled"}
        if op == "regenerateRecoveryCodes" and code in enrollment.recovery_codes:
            losing.add("wrongCode")   # a won regeneration took the code's whole set away
        assert set(statuses) <= {"accepted", "ok"} | losing, statuses
        changes[f"{op} {'won' if change.status == 'ok' else 'lost'}"] += 1
    record(f"races: {REPEAT} rounds of requests spending one code (99 or 3 verifies + a regeneration or "
           f"disable with it), 1 success each; {dict(changes)} ({time.monotonic() - began:.1f} s)")
