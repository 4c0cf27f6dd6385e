"""The clock check (issue 7) against real NTP answers: a fake server of our own (chosen offsets and
bad answers, fake_ntp_server.py) and a real chronyd, with the daemon's clock shifted by faketime.
Only 127.0.0.1 servers are ever configured."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from fake_ntp_server import sntp_query
from helpers import TWOFACTOR_CLI, free_port, totp

FAST_NTP = {"ntp_interval": 1, "ntp_timeout": 0.5, "ntp_samples": 2}
FAKETIME_120 = ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", "+120s"]
HERE = os.path.dirname(os.path.abspath(__file__))


def clock_status(daemon):
    answer = daemon.request("clockStatus")
    assert answer.status == "ok", answer
    return answer


def wait_for_status(daemon, predicate, timeout=15):
    """Polls clockStatus until predicate(answer) holds; returns the last answer either way."""
    deadline = time.time() + timeout
    answer = clock_status(daemon)
    while not predicate(answer) and time.time() < deadline:
        time.sleep(0.1)
        answer = clock_status(daemon)
    return answer


def measured(answer):
    return "clockOffsetMicros" in answer


def offset_seconds(answer):
    return answer["clockOffsetMicros"] / 1e6


@pytest.fixture
def chrony():
    """A real chronyd serving its local clock on 127.0.0.1:<free port>. -x: it never touches the
    system clock; -u root: no privilege drop, so it can write its files in our temp dir."""
    workdir = tempfile.mkdtemp(prefix="tf-chrony-")
    port = free_port(socket.SOCK_DGRAM)
    conf = os.path.join(workdir, "chrony.conf")
    with open(conf, "w") as f:
        f.write(f"port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n"
                f"pidfile {workdir}/chronyd.pid\ndriftfile {workdir}/drift\n")
    log = open(os.path.join(workdir, "chronyd.log"), "wb")
    process = subprocess.Popen(["chronyd", "-x", "-d", "-u", "root", "-f", conf],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.time() + 15
        while sntp_query("127.0.0.1", port, timeout=0.3) is None:
            assert process.poll() is None, open(log.name).read()
            assert time.time() < deadline, "chronyd did not answer:\n" + open(log.name).read()
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()  # our chronyd, by its pid
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def kernel_shims(tmp_path_factory):
    """LD_PRELOAD shims that make adjtimex report an unsynchronised or a synchronised kernel clock
    to the daemon (kernel_clock_shim.c), so compensation tests mean the same whatever this
    machine's kernel says. Returns {False: path, True: path}."""
    directory = tmp_path_factory.mktemp("kernel-shim")
    shims = {}
    for synchronised in (False, True):
        path = str(directory / f"kernel-{'sync' if synchronised else 'unsync'}.so")
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", f"-DSYNCHRONISED={int(synchronised)}",
                        "-o", path, os.path.join(HERE, "kernel_clock_shim.c")], check=True)
        shims[synchronised] = path
    return shims


def admin_clock(daemon, *options):
    """`twofactor admin clock` (as root) against the test daemon: its standard output."""
    result = subprocess.run([TWOFACTOR_CLI, "admin", "clock", *options, "--socket", daemon.socket],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    return result.stdout


def with_kernel(shims, synchronised, wrapper=()):
    """A daemon wrapper that makes the kernel look (un)synchronised to it, then runs `wrapper`
    (faketime appends its library to an LD_PRELOAD that is already set)."""
    return ["env", f"LD_PRELOAD={shims[synchronised]}", *wrapper]


def restart_with(daemon, wrapper):
    daemon.stop()
    daemon.start(wrapper=wrapper)


def rounds_done(servers, rounds, samples=FAST_NTP["ntp_samples"], timeout=20):
    """Waits until every server has been asked `rounds` more rounds' worth of samples."""
    targets = [(s, s.request_count() + rounds * samples) for s in servers]
    for server, count in targets:
        assert server.wait_for_requests(count, timeout=timeout), f"{server.address} was not asked"


def honest_server(fake_ntp):
    """An honest server 50 ms away, so a liar on loopback has the shortest round trip."""
    return fake_ntp(behaviour="slow", slow_seconds=0.05)


# --- agreement: one NTP answer must not move verification time (issue 10) ---------------------

def test_one_liar_among_honest_servers_has_no_effect(daemon_factory, fake_ntp, kernel_shims, user):
    honest = [honest_server(fake_ntp), honest_server(fake_ntp)]
    # The liar says true time minus 3000 s, with a shorter round trip than the honest servers.
    liar = fake_ntp(skew=-3000.0)
    servers = [honest[0], liar, honest[1]]
    daemon = daemon_factory(ntp_servers=" ".join(s.address for s in servers), drift_learning=False, **FAST_NTP)
    restart_with(daemon, with_kernel(kernel_shims, False))
    rounds_done(servers, 3)

    # Codes from the true time still work: the liar did not move verification time.
    begun = daemon.request("enrollBegin", {"user": user.name})
    assert begun.status == "ok", begun
    confirmed = daemon.request("enrollConfirm", {"user": user.name, "code": totp(begun["secret"], at=time.time())})
    assert confirmed.status == "ok", (confirmed, clock_status(daemon))
    accepted = daemon.request("verify", {"user": user.name, "code": totp(begun["secret"], at=time.time() + 30)})
    assert accepted.status == "accepted", accepted
    old = daemon.request("verify", {"user": user.name, "code": totp(begun["secret"], at=time.time() - 3000)})
    assert old.status == "wrongCode", old

    answer = clock_status(daemon)
    assert abs(offset_seconds(answer)) < 0.5, answer  # the honest majority's offset
    assert answer["clockServer"] in (honest[0].address, honest[1].address), answer
    assert answer["clockFalseticker"] == [liar.address], answer
    assert liar.address in answer["message"] and "falseticker" in answer["message"], answer
    log = daemon.log()
    assert re.search(rf"ntp-falseticker server={re.escape(liar.address)} offset=\+3000\.\d+s agree=2/3", log), log
    text = admin_clock(daemon)
    assert re.search(rf"^\s*Falsetickers:\s+{re.escape(liar.address)} \(outvoted", text, re.M), text
    assert json.loads(admin_clock(daemon, "--json"))["falsetickers"] == [liar.address]


def test_a_single_liar_is_only_diagnosed(daemon_factory, fake_ntp, kernel_shims, user):
    liar = fake_ntp(skew=-3000.0)
    daemon = daemon_factory(ntp_servers=liar.address, drift_learning=False, **FAST_NTP)
    restart_with(daemon, with_kernel(kernel_shims, False))
    rounds_done([liar], 3)

    secret = daemon.enroll(user.name, at=time.time()).secret
    accepted = daemon.request("verify", {"user": user.name, "code": totp(secret, at=time.time() + 30)})
    assert accepted.status == "accepted", accepted

    # The diagnosis shows what the one server says, and how to fix it, but nothing is corrected.
    answer = clock_status(daemon)
    assert abs(offset_seconds(answer) - 3000) < 0.5, answer
    assert answer["clockState"] == "bad", answer
    assert "clockCorrectionMicros" not in answer, answer
    assert "only one NTP server answered" in answer["message"], answer
    assert "codes are checked against this clock" in answer["message"], answer
    assert "chronyc makestep" in answer["clockRemedy"] and "clock_min_sources" in answer["clockRemedy"], answer
    assert "clockFalseticker" not in answer, answer


def kernel_synchronised_here():
    """What this machine's kernel says (adjtimex, read only), the way the daemon reads it."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    timex = ctypes.create_string_buffer(256)  # struct timex; modes = 0: just read
    state = libc.adjtimex(timex)
    status = int.from_bytes(timex.raw[40:44], "little")  # after modes (+pad) and four longs
    return state not in (-1, 5) and not status & 0x40    # TIME_ERROR, STA_UNSYNC


def test_reports_this_machines_kernel_clock_state(daemon):
    # Without the shim the daemon reads the real kernel; the compensation tests below pin it.
    expected = kernel_synchronised_here()
    assert clock_status(daemon)["kernelSynchronized"] is expected
    print("this machine's kernel clock is", "synchronised" if expected else "not synchronised")


def shifted_daemon(daemon_factory, servers, kernel_shims, synchronised=False, **overrides):
    """A daemon 120 s ahead of true time (faketime) asking `servers`, with the kernel looking
    (un)synchronised to it."""
    # 2 s rounds: a confirmed offset stays applied for 4 s, well past the next round even on a busy machine.
    settings = dict(FAST_NTP, drift_learning=False, ntp_interval=2)
    settings.update(overrides)
    daemon = daemon_factory(ntp_servers=" ".join(servers), **settings)
    restart_with(daemon, with_kernel(kernel_shims, synchronised, FAKETIME_120))
    return daemon


def corrected(answer):
    return "clockCorrectionMicros" in answer and abs(answer["clockCorrectionMicros"] / 1e6 - 120) < 0.5


def assert_codes_follow(daemon, user, true_time_works):
    """Enrols `user` and checks which clock codes are verified against: true time (compensated)
    or the daemon's own clock, 120 s ahead. Codes from the other clock are refused."""
    own, other = (0, 120) if true_time_works else (120, 0)
    secret = daemon.enroll(user.name, at=time.time() + own).secret
    refused = daemon.request("verify", {"user": user.name, "code": totp(secret, at=time.time() + other)})
    assert refused.status == "wrongCode", refused
    accepted = daemon.request("verify", {"user": user.name, "code": totp(secret, at=time.time() + own + 30)})
    assert accepted.status == "accepted", accepted
    return refused


def test_two_honest_servers_compensate_a_shifted_clock_after_two_rounds(daemon_factory, chrony, fake_ntp,
                                                                        kernel_shims, user):
    # Rounds 5 s apart, so the first measurement is seen well before the second round confirms it.
    daemon = shifted_daemon(daemon_factory, [chrony, fake_ntp().address], kernel_shims, ntp_interval=5)
    first = wait_for_status(daemon, measured)
    assert abs(offset_seconds(first) - 120) < 0.05, first
    assert "clockCorrectionMicros" not in first, first
    assert "not yet confirmed by a second round" in first["message"], first

    answer = wait_for_status(daemon, corrected, timeout=30)
    assert corrected(answer), answer
    assert answer["clockState"] == "bad", answer
    assert "codes are checked against the corrected time" in answer["message"], answer
    assert "clockFalseticker" not in answer, answer

    text = admin_clock(daemon)
    assert re.search(r"^\s*Compensation:\s+on: codes are checked against the corrected time \(\+1(19\.9|20\.0)\d\d s\)$", text, re.M), text
    assert abs(json.loads(admin_clock(daemon, "--json"))["correction_micros"] / 1e6 - 120) < 0.05

    refused = assert_codes_follow(daemon, user, true_time_works=True)
    assert abs(refused["clockOffsetMicros"] / 1e6 - 120) < 0.05, refused
    log = daemon.log()
    assert re.search(r"result=accepted reason=ok", log), log
    assert re.search(r"result=rejected reason=wrong-code clock_offset=\+120\.0\d\ds", log), log


def test_no_compensation_while_the_kernel_is_synchronised(daemon_factory, chrony, fake_ntp, kernel_shims, user):
    honest = fake_ntp()
    daemon = shifted_daemon(daemon_factory, [chrony, honest.address], kernel_shims, synchronised=True)
    rounds_done([honest], 4)
    answer = clock_status(daemon)
    assert abs(offset_seconds(answer) - 120) < 0.05, answer
    assert answer["kernelSynchronized"] is True, answer
    assert "clockCorrectionMicros" not in answer, answer
    assert "an NTP daemon keeps this clock synchronised: codes are checked against this clock" in answer["message"], answer
    assert_codes_follow(daemon, user, true_time_works=False)


def test_a_liar_after_good_rounds_has_no_effect(daemon_factory, fake_ntp, kernel_shims, user):
    honest = [honest_server(fake_ntp), honest_server(fake_ntp)]
    turncoat = fake_ntp()  # honest at first, and the shortest round trip
    servers = [turncoat, *honest]
    daemon = shifted_daemon(daemon_factory, [s.address for s in servers], kernel_shims)
    answer = wait_for_status(daemon, corrected, timeout=30)
    assert corrected(answer), answer

    turncoat.set(skew=-3000.0)
    rounds_done(servers, 3)
    answer = clock_status(daemon)
    assert corrected(answer), answer["message"]  # still the honest majority's 120 s
    assert answer["clockFalseticker"] == [turncoat.address], answer
    assert_codes_follow(daemon, user, true_time_works=True)
    assert re.search(rf"ntp-falseticker server={re.escape(turncoat.address)} offset=\+3120\.\d+s agree=2/3",
                     daemon.log()), daemon.log()


def test_a_stale_measurement_is_not_applied(daemon_factory, fake_ntp, kernel_shims, user):
    servers = [fake_ntp(), fake_ntp()]
    daemon = shifted_daemon(daemon_factory, [s.address for s in servers], kernel_shims)
    assert corrected(wait_for_status(daemon, corrected, timeout=30))

    for server in servers:
        server.set(behaviour="silent")
    # ntp_interval is 2 s: four seconds after the last confirming round, the offset is too old to apply.
    answer = wait_for_status(daemon, lambda a: "clockCorrectionMicros" not in a and a["clockState"] == "unknown",
                             timeout=20)
    assert "clockCorrectionMicros" not in answer, answer
    assert answer["clockState"] == "unknown", answer
    assert "last measured" in answer["message"], answer   # still shown, no longer applied
    assert abs(offset_seconds(answer) - 120) < 0.05, answer
    assert_codes_follow(daemon, user, true_time_works=False)


# --- the fake server: measured offsets -----------------------------------------------------------

@pytest.mark.parametrize("skew, state", [(37.5, "bad"), (-4.25, "warning"), (0.0, "ok"), (-600.0, "bad")])
def test_reports_the_offset_of_the_server(daemon_factory, fake_ntp, skew, state):
    server = fake_ntp(skew=skew)
    daemon = daemon_factory(ntp_servers=server.address, **FAST_NTP)
    answer = wait_for_status(daemon, measured)
    assert measured(answer), answer
    # The server runs `skew` ahead of us, so our clock is `skew` behind it: local − true = −skew.
    assert abs(offset_seconds(answer) - (-skew)) < 0.1, answer
    assert answer["clockState"] == state, answer
    assert answer["clockServer"] == server.address
    assert answer["clockStratum"] == 2
    assert 0 <= answer["clockDelayMicros"] < 100_000, answer
    assert abs(answer["clockMeasuredAt"] - time.time()) < 5, answer
    assert answer["clockCompensation"] is True
    assert answer["message"].startswith(state + ": "), answer
    if state == "ok":
        assert "chronyc makestep" not in answer.get("clockRemedy", ""), answer
    else:
        assert "chronyc makestep" in answer["clockRemedy"], answer


def test_requests_carry_unpredictable_transmit_timestamps(daemon_factory, fake_ntp):
    server = fake_ntp()
    daemon_factory(ntp_servers=server.address, **FAST_NTP)
    assert server.wait_for_requests(6)
    requests = server.requests[:6]
    fractions = [r.transmit_raw & 0xFFFFFFFF for r in requests]
    assert len(set(fractions)) == len(fractions), fractions
    # The seconds are the daemon's clock; the low 32 bits are random, not the sub-second time.
    for r in requests:
        assert abs((r.transmit_raw >> 32) - 2_208_988_800 - r.arrived) < 2
    sub_second_errors = [abs((f / 2**32) - (r.arrived % 1)) for f, r in zip(fractions, requests)]
    assert max(sub_second_errors) > 0.05, sub_second_errors
    # Each request comes from its own ephemeral port.
    assert len({r.source for r in requests}) > 1


# --- the fake server: bad answers ----------------------------------------------------------------

BAD_ANSWERS = [
    ("kod", "kiss-o'-death RATE"),
    ("stratum16", "server unsynchronised (stratum 16"),
    ("leap3", "leap indicator 3"),
    ("wrong-origin", "does not echo our transmit timestamp"),
    ("wrong-mode", "mode 3, not 4"),
    ("bad-version", "version 2, not 3 or 4"),
    ("slow", "round-trip delay"),
    ("wrong-port", "no NTP server answered"),
    ("silent", "no NTP server answered"),
]


@pytest.mark.parametrize("behaviour, why", BAD_ANSWERS, ids=[b for b, _ in BAD_ANSWERS])
def test_bad_answers_are_ignored(daemon_factory, fake_ntp, behaviour, why):
    server = fake_ntp(skew=50.0, behaviour=behaviour)
    overrides = dict(FAST_NTP)
    if behaviour == "slow":
        overrides["ntp_timeout"] = 2  # the answer does arrive, 1.3 s late: too slow to trust
    daemon = daemon_factory(ntp_servers=server.address, **overrides)
    assert server.wait_for_requests(3 if behaviour != "slow" else 2), "the daemon never asked"
    answer = wait_for_status(daemon, lambda a: not a["message"].startswith("unknown: not measured yet"))
    assert answer["clockState"] == "unknown", answer
    assert "clockOffsetMicros" not in answer, answer
    assert why in answer["message"], answer
    assert "clockRemedy" in answer and server.address in answer["clockRemedy"], answer


def test_deny_kiss_stops_the_queries(daemon_factory, fake_ntp):
    server = fake_ntp(behaviour="kod", kiss_code="DENY")
    daemon = daemon_factory(ntp_servers=server.address, **FAST_NTP)
    assert server.wait_for_requests(1)
    time.sleep(3.5)  # three more rounds
    assert server.request_count() == 1, "the daemon kept asking a server that said DENY"
    assert "refused service (kiss-o'-death DENY)" in daemon.log()
    assert clock_status(daemon)["clockState"] == "unknown"


def test_bad_answers_keep_the_previous_good_value(daemon_factory, fake_ntp):
    server = fake_ntp(skew=20.0)
    daemon = daemon_factory(ntp_servers=server.address, **FAST_NTP)
    answer = wait_for_status(daemon, measured)
    assert abs(offset_seconds(answer) + 20) < 0.1, answer

    server.set(behaviour="wrong-origin", skew=50.0)
    seen = server.request_count()
    assert server.wait_for_requests(seen + 4)
    answer = wait_for_status(daemon, lambda a: a["clockState"] == "unknown")
    assert answer["clockState"] == "unknown", answer
    assert abs(offset_seconds(answer) + 20) < 0.1, answer  # not the forged −50
    assert "last measured" in answer["message"], answer

    server.set(behaviour="good")
    answer = wait_for_status(daemon, lambda a: measured(a) and abs(offset_seconds(a) + 50) < 0.1)
    assert abs(offset_seconds(answer) + 50) < 0.1, answer
    assert answer["clockState"] == "bad", answer


def test_no_answer_is_unknown_logged_once_and_logins_still_work(daemon_factory, fake_ntp, user):
    server = fake_ntp(behaviour="silent")
    # 2 s timeouts, 4 samples: a round takes ~8 s, so a login that waited for NTP would show it.
    daemon = daemon_factory(ntp_servers=server.address, ntp_interval=1, ntp_timeout=2, ntp_samples=4)
    assert server.wait_for_requests(1)
    enrollment = daemon.enroll(user.name)
    # The enrolment's code used this step; the next one and a recovery code log in.
    for code in (enrollment.code(1), enrollment.recovery_codes[0]):
        started = time.monotonic()
        answer = daemon.request("verify", {"user": user.name, "code": code})
        elapsed = time.monotonic() - started
        assert answer.status == "accepted", answer
        assert elapsed < 1.0, f"verify took {elapsed:.2f} s: it waited for NTP"
    answer = wait_for_status(daemon, lambda a: "no NTP server answered" in a["message"], timeout=25)
    assert answer["clockState"] == "unknown", answer
    assert "no NTP server answered" in answer["message"], answer
    assert server.wait_for_requests(9, timeout=30)  # at least a second round failed too
    time.sleep(0.5)
    log = daemon.log()
    assert log.count("no NTP server answered") == 1, log  # logged on the transition only
    assert "result=accepted" in log


def test_nothing_is_queried_without_servers(daemon):
    answer = clock_status(daemon)
    assert answer["clockState"] == "unknown", answer
    assert "ntp_servers is empty" in answer["message"], answer
    assert isinstance(answer["kernelSynchronized"], bool)


# --- a real NTP server ---------------------------------------------------------------------------

def test_measures_chrony(daemon_factory, chrony):
    daemon = daemon_factory(ntp_servers=chrony, **FAST_NTP)
    answer = wait_for_status(daemon, measured)
    assert measured(answer), answer
    assert abs(offset_seconds(answer)) < 0.05, answer
    assert answer["clockState"] == "ok", answer
    assert answer["clockServer"] == chrony
    assert answer["clockStratum"] == 8, answer


def test_shifted_clock_without_compensation_rejects_true_codes(daemon_factory, chrony, user):
    daemon = daemon_factory(ntp_servers=chrony, clock_compensation=False, drift_learning=False, **FAST_NTP)
    daemon.stop()
    daemon.start(wrapper=FAKETIME_120)
    answer = wait_for_status(daemon, measured)
    assert abs(offset_seconds(answer) - 120) < 0.05, answer
    assert answer["clockCompensation"] is False
    assert "clock_compensation is off" in answer["message"], answer

    # Without compensation the daemon goes by its own clock, 120 s ahead.
    secret = daemon.enroll(user.name, at=time.time() + 120).secret
    rejected = daemon.request("verify", {"user": user.name, "code": totp(secret, at=time.time())})
    assert rejected.status == "wrongCode", rejected
    assert abs(rejected["clockOffsetMicros"] / 1e6 - 120) < 0.05, rejected
    assert "clock" in rejected.get("message", ""), rejected
    assert re.search(r"result=rejected reason=wrong-code clock_offset=\+120\.0\d\ds", daemon.log()), daemon.log()
    # Its own clock's codes still work (the window is not widened or moved).
    local = daemon.request("verify", {"user": user.name, "code": totp(secret, at=time.time() + 150)})
    assert local.status == "accepted", local
