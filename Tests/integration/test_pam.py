"""pam_twofactor.so against the real twofactord binary, driven by pamtester and by a C driver
(pam_driver.c) for endurance, leaks and threads.

Every case writes its own PAM service that names the module by absolute path
(helpers.PAM_MODULE). Most stacks make the module's return value visible to pamtester:

    auth [success=done ignore=ignore default=die] MODULE ARGS
    auth requisite pam_debug.so auth=user_unknown

so PAM_SUCCESS -> "successfully authenticated", PAM_IGNORE -> falls through to pam_debug ->
"User not known to the underlying authentication module", PAM_AUTH_ERR -> "Authentication
failure", PAM_AUTHINFO_UNAVAIL -> "Authentication service cannot retrieve authentication info".

The few peers that are not the real daemon (a socket nobody listens on, FakePeer: a process that
stalls, closes, vanishes, never accepts, answers garbage or error statuses, or, running as
another user, accepts every code) stand for a broken daemon or an impostor, which is exactly
what those cases test. The module's syslog lines are read for real (SyslogCapture).
"""
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import helpers
import twofactor_wire as wire
from fake_ntp_server import FakeNTPServer
from helpers import PAM_MODULE, Daemon, factory, pamtester, totp, wrong_code

HERE = os.path.dirname(os.path.abspath(__file__))
INCORRECT = helpers.WRONG_CODE_MESSAGE
DEFAULT_PROMPT = helpers.CODE_PROMPT

OUTCOMES = {
    "success": "successfully authenticated",
    "ignore": "User not known to the underlying authentication module",
    "auth_err": "Authentication failure",
    "authinfo_unavail": "Authentication service cannot retrieve authentication info",
}


def observing_stack(args):
    """A stack in which each return value of the module ends differently (see the docstring)."""
    return [
        f"auth [success=done ignore=ignore default=die] {PAM_MODULE} {args}",
        "auth requisite pam_debug.so auth=user_unknown",
        "account required pam_permit.so",
    ]


def login_stack(args):
    """The usual stack: the module, then a password module that has let the person through
    (pam_permit). PAM_IGNORE from the module is a login on the password alone."""
    return [
        f"auth required {PAM_MODULE} {args}",
        "auth required pam_permit.so",
        "account required pam_permit.so",
    ]


class Run:
    """One pamtester run: its outcome, its combined output and how long it took."""

    def __init__(self, service, user, answers, timeout=60, syslog=None):
        """With a SyslogCapture, pamtester runs where the module's syslog lines reach it."""
        start = time.monotonic()
        self.result = pamtester(service, user, answers, timeout=timeout,
                                wrapper=syslog.wrapper if syslog else ())
        self.elapsed = time.monotonic() - start
        self.output = (self.result.stdout + self.result.stderr).decode("utf-8", "replace")
        # pamtester exits 0 or 1; anything else (a signal) means the module crashed it.
        assert self.result.returncode in (0, 1), f"pamtester died: {self.result.returncode}\n{self.output}"
        found = [name for name, text in OUTCOMES.items() if text in self.output]
        assert len(found) == 1, f"cannot tell the outcome:\n{self.output}"
        self.outcome = found[0]
        assert (self.outcome == "success") == (self.result.returncode == 0), self.output

    def __repr__(self):
        return f"Run({self.outcome}, {self.elapsed:.2f}s, {self.output!r})"


@pytest.fixture
def enrolled(daemon, user):
    """An enrolled throwaway user (helpers.Enrollment) on the `daemon` fixture."""
    return daemon.enroll(user.name)


@pytest.fixture
def service_for(pam_service, daemon):
    """service_for("require") -> an observing PAM service for the daemon's socket plus ARGS."""
    def make(args=""):
        return pam_service(observing_stack(f"socket={daemon.socket} {args}"))
    return make


# --- syslog -------------------------------------------------------------------------------------

# Run as `unshare -m --propagation private sh -c SYSLOG_NAMESPACE sh SOCKET DEVDIR COMMAND...`:
# in a private mount namespace, /dev becomes a tmpfs of symlinks to every entry of the real /dev
# (mounted at /dev/.host) except `log`, which is our datagram SOCKET. glibc's syslog(3), which
# pam_syslog uses, then writes to us, and nothing changes outside the namespace (a real syslog
# daemon keeps its /dev/log; a machine without one gets none).
SYSLOG_NAMESPACE = r"""
set -e
sock=$1; new=$2; shift 2
mount -t tmpfs -o mode=0755,size=1m twofactor-test-dev "$new"
mkdir "$new/.host"
mount --rbind /dev "$new/.host"
(cd "$new" && ln -s .host/* . && rm -f log && : > log)
mount --bind "$sock" "$new/log"
mount --move "$new" /dev
exec "$@"
"""


class SyslogCapture:
    """Receives the syslog lines of commands run under `wrapper` (see SYSLOG_NAMESPACE)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tfpam-syslog-", dir="/tmp")
        self.path = os.path.join(self.dir, "log")
        os.mkdir(os.path.join(self.dir, "dev"))
        self.wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SYSLOG_NAMESPACE, "sh",
                        self.path, os.path.join(self.dir, "dev")]
        self.messages = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append(data.decode("utf-8", "replace"))

    def text(self):
        """Everything logged so far. Datagrams on one socket arrive in order, so once a marker
        sent now has arrived, so has every line the finished commands logged."""
        marker = f"twofactor-test-marker-{secrets.token_hex(8)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(marker.encode(), self.path)
        deadline = time.monotonic() + 10
        while not any(marker in m for m in self.messages):
            assert time.monotonic() < deadline, "the syslog capture stopped receiving"
            time.sleep(0.01)
        return "\n".join(m for m in self.messages if "twofactor-test-marker-" not in m)

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def syslog():
    """A SyslogCapture whose wrapper has been seen to work: a test that relies on the log can
    never pass without reading it."""
    capture = SyslogCapture()
    try:
        probe = f"twofactor-test-probe-{secrets.token_hex(8)}"
        result = subprocess.run([*capture.wrapper, "logger", "-t", "twofactor-test", probe],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"cannot capture syslog: {result}"
        assert probe in capture.text(), "logger's line did not reach the syslog capture"
        yield capture
    finally:
        capture.close()


# --- peers that are not a working daemon --------------------------------------------------------

STALL = "stall"    # accept and read the request, never answer
VANISH = "vanish"  # remove the socket and stop listening: the daemon went away


class FakePeer:
    """A Unix socket listened on by a forked process running as `uid`: a hung, broken, vanishing
    or hostile stand-in for the daemon. `replies` maps a request's operation ("check", "verify",
    or "*" for any) to bytes written before closing (b"" closes at once), STALL or VANISH; an
    operation it has no reply for is stalled. accept=False listens but never accepts, so
    connections wait in the backlog. requests() lists the operations received, in order."""

    OPERATIONS = {code: name for name, code in wire.OP.items()}

    def __init__(self, replies, uid=0, gid=0, accept=True, backlog=16):
        self.dir = tempfile.mkdtemp(prefix="tfpam-peer-", dir="/tmp")
        os.chown(self.dir, uid, gid)
        self.path = os.path.join(self.dir, "peer.sock")
        self.replies, self.accept, self.backlog = replies, accept, backlog
        self.pid, self.reports = wire.fork_as(uid, gid, (), self._serve)
        assert os.read(self.reports, 1) == b"+", "the fake peer did not start"
        self.seen = b""

    def _serve(self, report):
        signal.alarm(600)  # never outlive a test run, whatever happens to pytest
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(self.backlog)
        os.write(report, b"+")
        held = []
        while True:
            if not self.accept:
                time.sleep(3600)
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                length = struct.unpack(">I", wire._recv_exactly(conn, 4))[0]
                operation = wire._recv_exactly(conn, length)[1]
            except (OSError, ValueError, struct.error, IndexError):
                conn.close()
                continue
            os.write(report, bytes([operation]))
            name = self.OPERATIONS.get(operation)
            reply = self.replies.get(name, self.replies.get("*", STALL))
            if reply == STALL:
                held.append(conn)
            elif reply == VANISH:
                os.unlink(self.path)
                listener.close()
                conn.close()
                time.sleep(3600)
            else:
                try:
                    conn.sendall(reply)
                except OSError:
                    pass
                conn.close()

    def requests(self):
        """The operations received so far, by name."""
        os.set_blocking(self.reports, False)
        try:
            self.seen += os.read(self.reports, 4096)
        except BlockingIOError:
            pass
        return [self.OPERATIONS.get(code, hex(code)) for code in self.seen]

    def fill_backlog(self):
        """Connects until the listen backlog is full (connect fails with EAGAIN); returns the
        connections, which the caller must keep open."""
        held = []
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(self.path)
            except BlockingIOError:
                client.close()
                return held
            held.append(client)
            assert len(held) < 1000, "the backlog never filled"

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.reports)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def fake_peer():
    yield from factory(FakePeer, FakePeer.close)


@pytest.fixture
def dead_socket_path():
    """A socket path nobody listens on (the directory exists, the socket does not)."""
    directory = tempfile.mkdtemp(prefix="tfpam-dead-", dir="/tmp")
    yield os.path.join(directory, "twofactord.sock")
    shutil.rmtree(directory, ignore_errors=True)


# --- the module file ----------------------------------------------------------------------------

def test_module_file_is_small_self_contained_and_exports_only_the_entry_points():
    size = os.path.getsize(PAM_MODULE)
    assert size < 256 * 1024, f"{PAM_MODULE} is {size} bytes"

    dynamic = subprocess.run(["readelf", "-d", PAM_MODULE], check=True, capture_output=True, text=True).stdout
    needed = sorted(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic))
    assert needed == ["libc.so.6", "libpam.so.0"], needed
    flags = [line for line in dynamic.splitlines() if "FLAGS_1" in line]
    assert flags and "NODELETE" in flags[0], dynamic

    symbols = subprocess.run(["nm", "-D", "--defined-only", PAM_MODULE], check=True,
                             capture_output=True, text=True).stdout
    global_symbols = sorted(fields[2] for fields in (line.split() for line in symbols.splitlines())
                            if len(fields) == 3 and fields[1].isupper())
    assert global_symbols == ["pam_sm_acct_mgmt", "pam_sm_authenticate", "pam_sm_setcred"], symbols

    undefined = subprocess.run(["nm", "-D", "--undefined-only", PAM_MODULE], check=True,
                               capture_output=True, text=True).stdout
    assert "swift_" not in undefined, "needs the Swift runtime:\n" + undefined


# --- codes --------------------------------------------------------------------------------------

def test_right_code_logs_in_and_the_same_code_again_fails(daemon, enrolled, service_for):
    service = service_for()
    code = enrolled.code(steps_ahead=1)
    first = Run(service, enrolled.user, [code])
    assert first.outcome == "success", first
    assert DEFAULT_PROMPT in first.output
    assert INCORRECT not in first.output

    again = Run(service, enrolled.user, [code])
    assert again.outcome == "auth_err", again
    assert INCORRECT in again.output
    assert "reason=code-reused" in daemon.log()


def daemon_connections(service, user, answers, socket_path):
    """Runs pamtester under strace; returns (Run-like outcome text, connects to `socket_path`)."""
    with tempfile.NamedTemporaryFile(prefix="tfpam-strace-", dir="/tmp") as trace:
        result = pamtester(service, user, answers, wrapper=("strace", "-f", "-qq", "-e", "trace=connect",
                                                            "-o", trace.name))
        calls = open(trace.name).read()
    return result, calls.count(f'sun_path="{socket_path}"')


def test_a_login_asks_check_and_verify_on_one_connection(daemon, enrolled, service_for):
    """One connect (and one peer check) per login, not one per request: the daemon keeps the
    connection open while the person types the code (within its read timeout)."""
    result, connects = daemon_connections(service_for(), enrolled.user, [enrolled.code(steps_ahead=1)], daemon.socket)
    assert result.returncode == 0, result
    assert connects == 1, f"{connects} connections for one login"


def test_a_connection_the_daemon_closed_during_the_prompt_is_replaced(daemon_factory, make_user, pam_service):
    """Someone slower than the daemon's read timeout: it closed the idle connection after check,
    so the module connects again for verify, and the login still works (once)."""
    daemon = daemon_factory(read_timeout=1)
    user = make_user()
    enrollment = daemon.enroll(user.name)
    service = pam_service(observing_stack(f"socket={daemon.socket}"))
    code = enrollment.code(steps_ahead=1)
    process = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=connect", "-o", f"{daemon.dir}/connects",
                                "pamtester", "-v", service, user.name, "authenticate"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(2.5)  # at the prompt, past the daemon's read timeout
    output, _ = process.communicate(f"{code}\n".encode(), timeout=30)
    assert process.returncode == 0, output
    assert OUTCOMES["success"] in output.decode(), output
    with open(f"{daemon.dir}/connects") as f:
        assert f.read().count(f'sun_path="{daemon.socket}"') == 2
    again = Run(service, user.name, [code])
    assert again.outcome == "auth_err", again


def test_wrong_code_fails_with_the_message(daemon, enrolled, service_for):
    service = service_for()
    run = Run(service, enrolled.user, [wrong_code(enrolled.secret)])
    assert run.outcome == "auth_err", run
    assert INCORRECT in run.output
    assert "clock" not in run.output  # no hint while the clock is not known to be wrong
    # The module passed the service name through to the audit log.
    assert f"verify account={enrolled.user} service={service} " in daemon.log(), daemon.log()
    assert "reason=wrong-code" in daemon.log()


def test_recovery_code_works_once_and_says_how_many_are_left(enrolled, service_for):
    service = service_for()
    codes = enrolled.recovery_codes
    first = Run(service, enrolled.user, [codes[0]])
    assert first.outcome == "success", first
    assert "Recovery code accepted; 7 recovery codes left." in first.output
    assert "twofactor recovery-codes" not in first.output

    reused = Run(service, enrolled.user, [codes[0]])
    assert reused.outcome == "auth_err", reused
    assert INCORRECT in reused.output

    # Lower-case and without dashes is the same code; down to 2 left the module warns.
    for used, code in enumerate(codes[1:6], start=2):
        run = Run(service, enrolled.user, [code.replace("-", "").lower() if used == 2 else code])
        assert run.outcome == "success", run
        left = 8 - used
        assert f"{left} recovery codes left" in run.output, run
        assert ("twofactor recovery-codes" in run.output) == (left <= 2), run
    last_but_one = Run(service, enrolled.user, [codes[6]])
    assert "1 recovery code left" in last_but_one.output and "twofactor recovery-codes" in last_but_one.output


def test_prompt_option_with_brackets(enrolled, service_for):
    run = Run(service_for("[prompt=Code from the app: ]"), enrolled.user, [enrolled.code(steps_ahead=1)])
    assert run.outcome == "success", run
    assert "Code from the app: " in run.output
    assert DEFAULT_PROMPT not in run.output


# --- accounts without 2FA ---------------------------------------------------------------------

def test_not_enrolled_is_ignored_by_default(user, service_for, syslog):
    run = Run(service_for("debug"), user.name, [], syslog=syslog)
    assert run.outcome == "ignore", run
    assert DEFAULT_PROMPT not in run.output  # never asked for a code
    assert f"user {user.name} has no two-factor authentication; ignoring" in syslog.text()


def test_not_enrolled_with_require_fails_and_says_how_to_enroll(user, service_for):
    run = Run(service_for("require"), user.name, [])
    assert run.outcome == "auth_err", run
    assert "Two-factor authentication is required" in run.output
    assert "twofactor enable" in run.output
    assert DEFAULT_PROMPT not in run.output


def test_not_enrolled_in_a_plain_required_stack_passes(pam_service, daemon, user):
    service = pam_service([f"auth required {PAM_MODULE} socket={daemon.socket}",
                           "auth required pam_permit.so"])
    run = Run(service, user.name, [])
    assert run.outcome == "success", run


# --- daemon unavailable ---------------------------------------------------------------------------

# failmode=open applies only when no daemon exists: nothing at the socket path (ENOENT) or
# nothing listening on it (ECONNREFUSED), found on the first request.
NO_DAEMON_OUTCOMES = [("", "authinfo_unavail"), ("failmode=secure", "authinfo_unavail"), ("failmode=open", "ignore")]


@pytest.mark.parametrize("failmode, expected", NO_DAEMON_OUTCOMES)
def test_daemon_down(pam_service, user, dead_socket_path, syslog, failmode, expected):
    service = pam_service(observing_stack(f"socket={dead_socket_path} {failmode}"))
    run = Run(service, user.name, [], syslog=syslog)
    assert run.outcome == expected, run
    logged = syslog.text()
    assert dead_socket_path in logged and "No such file or directory" in logged, logged
    if expected == "ignore":
        assert "failmode=open" in logged and "WARNING" in logged, logged
    else:
        assert "refusing" in logged, logged


@pytest.mark.parametrize("failmode, expected", NO_DAEMON_OUTCOMES)
def test_stale_socket_file_counts_as_down(pam_service, user, dead_socket_path, syslog, failmode, expected):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(dead_socket_path)  # bound but never listening: connection refused
    try:
        run = Run(pam_service(observing_stack(f"socket={dead_socket_path} {failmode}")), user.name, [],
                  syslog=syslog)
        assert run.outcome == expected, run
        assert "Connection refused" in syslog.text()
    finally:
        stale.close()


# Everything else is refused whatever the failmode: a daemon that is there (slow, flooded or
# broken) can be provoked by a local user, and must not turn into a login without the code.
BOTH_FAILMODES = ["failmode=secure", "failmode=open"]


@pytest.mark.parametrize("failmode", BOTH_FAILMODES)
def test_daemon_that_never_answers_costs_the_timeout_and_is_refused(pam_service, user, fake_peer, failmode):
    peer = fake_peer({"*": STALL})
    run = Run(pam_service(login_stack(f"socket={peer.path} timeout=1 {failmode}")), user.name, [], timeout=30)
    assert run.outcome == "authinfo_unavail", run
    assert 0.9 <= run.elapsed < 2.5, run
    assert peer.requests() == ["check"]


@pytest.mark.parametrize("failmode", BOTH_FAILMODES)
def test_daemon_that_never_accepts_is_refused(pam_service, user, fake_peer, syslog, failmode):
    """connect() succeeds into the listen backlog; the answer never comes."""
    peer = fake_peer({}, accept=False)
    run = Run(pam_service(login_stack(f"socket={peer.path} timeout=1 {failmode}")), user.name, [],
              syslog=syslog)
    assert run.outcome == "authinfo_unavail", run
    logged = syslog.text()
    assert "gave no usable answer to check: waiting for the answer: Connection timed out" in logged, logged
    assert "letting user" not in logged, logged


@pytest.mark.parametrize("failmode", BOTH_FAILMODES)
def test_daemon_with_a_full_backlog_is_refused(pam_service, user, fake_peer, syslog, failmode):
    """A connection flood fills the backlog: connect() says EAGAIN until the timeout."""
    peer = fake_peer({}, accept=False, backlog=4)
    flood = peer.fill_backlog()
    try:
        run = Run(pam_service(login_stack(f"socket={peer.path} timeout=1 {failmode}")), user.name, [],
                  syslog=syslog)
    finally:
        for client in flood:
            client.close()
    assert run.outcome == "authinfo_unavail", run
    logged = syslog.text()
    assert "gave no usable answer to check: connect (daemon busy): Resource temporarily unavailable" in logged, logged
    assert "letting user" not in logged, logged


ENROLLED = wire.encode_frame(0x02)
# What a peer that has answered `check` with "enrolled" does with the `verify` that carries the code.
AFTER_CHECK = {
    "stalls": STALL,
    "closes": b"",
    "garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "vanishes": VANISH,  # the next connect finds no socket: ENOENT, but after check answered
}


@pytest.mark.parametrize("failmode", BOTH_FAILMODES)
@pytest.mark.parametrize("name", sorted(AFTER_CHECK))
def test_no_failing_open_once_the_code_is_on_its_way(pam_service, user, fake_peer, syslog, name, failmode):
    peer = fake_peer({"check": ENROLLED, "verify": AFTER_CHECK[name]})
    service = pam_service(login_stack(f"socket={peer.path} timeout=1 {failmode}"))
    run = Run(service, user.name, ["000000"], timeout=30, syslog=syslog)
    assert run.outcome == "authinfo_unavail", run  # PAM_IGNORE would log in on the password alone
    assert DEFAULT_PROMPT in run.output
    assert "Two-factor authentication is unavailable right now" in run.output, run
    assert peer.requests() == ["check", "verify"]
    logged = syslog.text()
    assert "gave no usable answer to verify" in logged, logged
    assert f"refusing user {user.name}" in logged and "letting user" not in logged, logged


def frame(code, fields=(), version=wire.VERSION):
    return wire.encode_frame(code, fields, version=version)


def test_default_timeout_is_three_seconds(pam_service, user, fake_peer):
    peer = fake_peer({"*": STALL})
    run = Run(pam_service(observing_stack(f"socket={peer.path}")), user.name, [], timeout=30)
    assert run.outcome == "authinfo_unavail", run
    assert 2.9 <= run.elapsed < 5, run


# Answers that arrive but are unusable, or stop half-way: refused even with failmode=open (a
# `busy` can be provoked by any local user, and a daemon that stops mid-answer is there).
BROKEN_ANSWERS = {
    "internal-error": frame(0x24),
    "bad-request": frame(0x21, {"message": "no"}),
    "busy": frame(0x25),
    "permission-denied": frame(0x20),
    "unknown-status": frame(0x7f),
    "other-version": frame(0x02, version=2),
    "garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "huge-length": struct.pack(">I", 0x7fffffff) + b"\x01\x02",
    "short-length": struct.pack(">I", 1) + b"\x01",
    "field-past-end": struct.pack(">I", 6) + bytes([1, 2, 0x13, 0xff, 0xff, 0x41]),
    "truncated-payload": struct.pack(">I", 50) + b"\x01\x02",
    "closed-without-answer": b"",
}


@pytest.mark.parametrize("failmode", BOTH_FAILMODES)
@pytest.mark.parametrize("name", sorted(BROKEN_ANSWERS))
def test_broken_daemon_answers_are_refused_in_both_modes(pam_service, user, fake_peer, name, failmode):
    peer = fake_peer({"*": BROKEN_ANSWERS[name]})
    run = Run(pam_service(login_stack(f"socket={peer.path} timeout=2 {failmode}")), user.name, [])
    assert run.outcome == "authinfo_unavail", run


# --- what people type ---------------------------------------------------------------------------

BAD_ANSWERS = {
    "empty": "",
    "letters": "abcdef",
    "long": "7" * 1000,
    "control": "12\x0134\x1b56",
    "tab": "123\t456",
    "non-utf8": b"\xff\xfe\xc0\x80123".decode("latin-1"),
    "too-few-digits": "12345",
    "spaces-only": "      ",
}


@pytest.mark.parametrize("name", sorted(BAD_ANSWERS))
def test_bad_answers_fail_cleanly(enrolled, service_for, name):
    answer = BAD_ANSWERS[name]
    service = service_for()
    env = dict(os.environ, PYTHONIOENCODING="latin-1")
    text = (answer + "\n").encode("latin-1")
    start = time.monotonic()
    result = subprocess.run(["pamtester", "-v", service, enrolled.user, "authenticate"], input=text,
                            capture_output=True, timeout=30, env=env)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 1, output  # a failure, not a crash (a signal gives a negative code)
    assert OUTCOMES["auth_err"] in output, output
    assert INCORRECT in output, output
    assert time.monotonic() - start < 10
    # The module still works for the same account afterwards.
    run = Run(service, enrolled.user, [enrolled.code(steps_ahead=1)])
    assert run.outcome == "success", run


def test_lockout_after_five_wrong_codes_says_how_long(daemon, enrolled, service_for):
    service = service_for()
    bad = wrong_code(enrolled.secret)
    for attempt in range(5):
        run = Run(service, enrolled.user, [bad])
        assert run.outcome == "auth_err", run
    locked = Run(service, enrolled.user, [enrolled.code(steps_ahead=1)])  # even the right code, while locked
    assert locked.outcome == "auth_err", locked
    match = re.search(r"Too many incorrect codes; try again in (\d+) minutes?", locked.output)
    assert match, locked
    assert int(match.group(1)) == 5  # lockout_seconds = 300 by default


# --- one prompt for password and code (forward_pass) --------------------------------------------

@pytest.fixture
def password_service(pam_service, daemon):
    def make(module_args, unix_args="use_first_pass", before=()):
        return pam_service([*before,
                            f"auth requisite {PAM_MODULE} socket={daemon.socket} {module_args}",
                            f"auth required pam_unix.so {unix_args} nodelay",
                            "account required pam_permit.so"])
    return make


def test_forward_pass(daemon, user, password_service):
    enrollment = daemon.enroll(user.name)
    service = password_service("forward_pass")

    ok = Run(service, user.name, [user.password + enrollment.code(steps_ahead=1)])
    assert ok.outcome == "success", ok
    assert "Password and two-factor code: " in ok.output

    # Right (recovery) code, wrong password: the module accepts the code, pam_unix refuses.
    wrong_password = Run(service, user.name, ["x" + user.password + enrollment.recovery_codes[0]])
    assert wrong_password.outcome == "auth_err", wrong_password
    assert INCORRECT not in wrong_password.output
    assert "7 recovery codes left" in wrong_password.output

    # Right password, wrong code.
    wrong = Run(service, user.name, [user.password + wrong_code(enrollment.secret)])
    assert wrong.outcome == "auth_err", wrong
    assert INCORRECT in wrong.output

    # Password and a recovery code in its printed form.
    recovery = Run(service, user.name, [user.password + enrollment.recovery_codes[1]])
    assert recovery.outcome == "success", recovery
    assert "6 recovery codes left" in recovery.output

    # Nothing that looks like a code at the end.
    nothing = Run(service, user.name, [user.password])
    assert nothing.outcome == "auth_err", nothing


def test_forward_pass_user_without_2fa_gets_the_password_prompt(user, password_service):
    service = password_service("forward_pass", unix_args="try_first_pass")
    run = Run(service, user.name, [user.password])
    assert run.outcome == "success", run
    assert "Password: " in run.output
    assert "Password and two-factor code" not in run.output

    wrong = Run(service, user.name, ["not-" + user.password])
    assert wrong.outcome == "auth_err", wrong


def test_use_first_pass_takes_password_and_code_from_an_earlier_module(daemon, user, password_service):
    enrollment = daemon.enroll(user.name)
    # pam_exec with expose_authtok asks "Password: " and stores the answer as PAM_AUTHTOK.
    service = password_service("use_first_pass forward_pass",
                               before=["auth optional pam_exec.so expose_authtok /bin/true"])
    ok = Run(service, user.name, [user.password + enrollment.code(steps_ahead=1)])
    assert ok.outcome == "success", ok
    assert "two-factor" not in ok.output.lower()  # no second prompt

    wrong = Run(service, user.name, [user.password + wrong_code(enrollment.secret)])
    assert wrong.outcome == "auth_err", wrong
    assert INCORRECT in wrong.output


def test_use_first_pass_without_a_password_fails(daemon, user, service_for):
    daemon.enroll(user.name)
    run = Run(service_for("use_first_pass"), user.name, [])
    assert run.outcome == "auth_err", run


def test_try_first_pass_prompts_when_the_first_password_is_not_a_code(daemon, user, password_service):
    enrollment = daemon.enroll(user.name)
    service = password_service("try_first_pass", before=["auth optional pam_exec.so expose_authtok /bin/true"])
    # The earlier module's answer is a plain password: not shaped like a code, so the module asks.
    run = Run(service, user.name, [user.password, enrollment.code(steps_ahead=1)])
    assert run.outcome == "success", run
    assert DEFAULT_PROMPT in run.output


# --- options ------------------------------------------------------------------------------------

NONSENSE_OPTIONS = [
    "bogus", "=", "==", "failmode", "timeout", "socket=", "prompt=", "digits=", "digits=5",
    "digits=99999999999999999999", "timeout=0", "timeout=-1", "timeout=abc", "timeout=3s",
    "timeout=99999999999999999999999999", "failmode=maybe", "failmode=", "socket=relative/path",
    "socket=/" + "a" * 200, "prompt=" + "p" * 300, "[prompt=]", "%s%s%n%n", "daemon_user=",
]
# Longer than libpam lets a configuration line carry: handed to pam_sm_authenticate directly.
HUGE_OPTIONS = ["prompt=" + "p" * 10000, "x" * 10000, "timeout=" + "9" * 10000, "socket=/" + "s" * 10000,
                "failmode=" + "o" * 10000, "digits=" + "7" * 10000, "\x01\x02\x7f\xff", "=" * 10000,
                "daemon_user=" + "u" * 10000]


def test_nonsense_options_do_not_crash_and_fall_back(enrolled, pam_service, daemon, syslog):
    # The real socket comes last, so the module can still do its job with the defaults.
    args = " ".join(NONSENSE_OPTIONS) + f" socket={daemon.socket}"
    service = pam_service(observing_stack(args))
    run = Run(service, enrolled.user, [enrolled.code(steps_ahead=1)], syslog=syslog)
    assert run.outcome == "success", run
    assert DEFAULT_PROMPT in run.output  # the 10 KB prompt was refused
    logged = syslog.text()
    for text in ('option "bogus" is not a known option', 'option "timeout=0" must be whole seconds',
                 'option "failmode=maybe" must be secure or open; using secure',
                 'option "prompt=ppp', 'using the default prompt', 'using the default socket',
                 'option "daemon_user=" must be a user name of 1 to 256 bytes; using twofactor'):
        assert text in logged, logged
    assert 'option "%s%s%n%n" is not a known option' in logged, logged


def test_huge_options_do_not_crash_and_fall_back(enrolled, pam_service, daemon, pam_driver, syslog):
    service = pam_service([f"auth required {PAM_MODULE}"])  # the handle's service; argv is ours
    result = subprocess.run([*syslog.wrapper, pam_driver, "--direct", PAM_MODULE, service, enrolled.user,
                             enrolled.code(steps_ahead=1), *HUGE_OPTIONS, f"socket={daemon.socket}"],
                            capture_output=True, timeout=60)
    output = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, (result, output)
    assert f"message {1}: {DEFAULT_PROMPT}" in output, output  # PAM_PROMPT_ECHO_OFF, default text
    assert "status=0" in output, output
    logged = syslog.text()
    assert logged.count("is not a known option") >= 3, logged
    assert max(len(line) for line in logged.splitlines()) < 1000, "10 KB values must be cut"

    # The same with the daemon away: the huge failmode= must not have turned into "open".
    result = subprocess.run([pam_driver, "--direct", PAM_MODULE, service, enrolled.user, "x",
                             "failmode=open" + "n" * 10000, "socket=/nonexistent/twofactord.sock", *HUGE_OPTIONS[:3]],
                            capture_output=True, timeout=60)
    assert "status=9" in result.stdout.decode(), result  # PAM_AUTHINFO_UNAVAIL


@pytest.mark.parametrize("failmode", ["failmode=maybe", "failmode=", "failmode=OPEN", "failmode=open,"])
def test_bad_failmode_falls_back_to_secure(pam_service, user, dead_socket_path, failmode):
    run = Run(pam_service(observing_stack(f"socket={dead_socket_path} {failmode}")), user.name, [])
    assert run.outcome == "authinfo_unavail", run


@pytest.mark.parametrize("timeout", ["timeout=0", "timeout=99999999999999999999", "timeout=abc"])
def test_bad_timeout_falls_back_to_the_default(pam_service, user, fake_peer, timeout):
    peer = fake_peer({"*": STALL})
    run = Run(pam_service(observing_stack(f"socket={peer.path} {timeout}")), user.name, [], timeout=30)
    assert run.outcome == "authinfo_unavail", run
    assert 2.9 <= run.elapsed < 5, run


def test_setcred_succeeds(pam_service, user):
    service = pam_service([f"auth required {PAM_MODULE}", "account required pam_permit.so"])
    result = subprocess.run(["pamtester", "-v", service, user.name, "setcred"], capture_output=True,
                            timeout=30)
    assert result.returncode == 0, result


# --- endurance, leaks, threads ------------------------------------------------------------------

@pytest.fixture(scope="module")
def pam_driver(tmp_path_factory):
    binary = str(tmp_path_factory.mktemp("driver") / "pam_driver")
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", binary, os.path.join(HERE, "pam_driver.c"),
                    "-lpam", "-lpthread"], check=True)
    return binary


PAM_SUCCESS, PAM_AUTH_ERR = 0, 7


@pytest.fixture
def driver_setup(daemon_factory, make_user, pam_service):
    """A daemon, a plain stack (module then pam_permit: not enrolled -> success), a user without
    2FA, an enrolled user for wrong codes, and enrolled users with one valid code each."""
    daemon = daemon_factory(max_failures=1000)

    def make(valid_users=1):
        service = pam_service([f"auth required {PAM_MODULE} socket={daemon.socket}",
                               "auth required pam_permit.so"])
        plain = make_user()
        bulk = daemon.enroll(make_user().name)
        valid = [daemon.enroll(make_user().name) for _ in range(valid_users)]
        specs = [f"{plain.name}:x:{PAM_SUCCESS}", f"{bulk.user}:{wrong_code(bulk.secret)}:{PAM_AUTH_ERR}"]
        specs += [f"!{index}:{e.user}:{e.code(steps_ahead=1)}:{PAM_SUCCESS}" for index, e in enumerate(valid)]
        return service, specs, daemon
    return make


def parse_driver(output):
    match = re.search(r"cycles=(\d+) mismatches=(\d+) rss_warm_kb=(-?\d+) rss_end_kb=(-?\d+)", output)
    assert match, output
    return [int(g) for g in match.groups()]


def test_endurance_2000_cycles_without_growth(pam_driver, driver_setup):
    service, specs, daemon = driver_setup()
    cycles, warmup = 2400, 400
    result = subprocess.run([pam_driver, service, str(cycles), "1", str(warmup), *specs],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    done, mismatches, warm, end = parse_driver(result.stdout)
    assert done == cycles + 1 and mismatches == 0
    growth_per_cycle = (end - warm) * 1024 / (cycles - warmup)
    print(f"RSS {warm} kB after warm-up, {end} kB at the end: {growth_per_cycle:.1f} bytes per cycle")
    assert growth_per_cycle < 1024, result.stdout
    # The driver sets PAM_RHOST and PAM_TTY; the module passes them on to the audit log.
    assert re.search(r"verify account=\S+ service=\S+ rhost=127\.0\.0\.1 tty=pam_driver method=totp result=accepted",
                     daemon.log()), daemon.log()[-2000:]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_no_leaks_under_valgrind(pam_driver, driver_setup):
    service, specs, _ = driver_setup()
    result = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                             "--error-exitcode=99", pam_driver, service, "100", "1", "10", *specs],
                            capture_output=True, text=True, timeout=900)
    summary = result.stderr
    assert result.returncode == 0, summary[-4000:]
    assert re.search(r"definitely lost: 0 bytes in 0 blocks", summary) or "All heap blocks were freed" in summary, summary[-4000:]
    assert "ERROR SUMMARY: 0 errors" in summary, summary[-4000:]
    print(re.findall(r"==\d+== +(definitely lost: .*|total heap usage: .*)", summary))


def test_eight_threads_authenticate_at_once(pam_driver, driver_setup):
    service, specs, _ = driver_setup(valid_users=8)
    result = subprocess.run([pam_driver, service, "250", "8", "10", *specs],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    done, mismatches, _, _ = parse_driver(result.stdout)
    assert done == 8 * 250 + 8 and mismatches == 0, result.stdout


# --- memory hygiene -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def free_check(tmp_path_factory):
    """pam_driver.c built as an LD_PRELOAD library whose free() reports freed blocks that still
    hold $FREE_CHECK_MARKER, checked first against a program that frees a secret unzeroed."""
    directory = tmp_path_factory.mktemp("free_check")
    library = str(directory / "free_check.so")
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-DFREE_CHECK", "-shared", "-fPIC", "-o", library,
                    os.path.join(HERE, "pam_driver.c")], check=True)
    careless = directory / "careless.c"
    careless.write_text('#include <stdlib.h>\n#include <string.h>\n'
                        'int main(void) { char *p = malloc(64); strcpy(p, getenv("FREE_CHECK_MARKER"));'
                        ' free(p); return 0; }\n')
    subprocess.run(["gcc", "-o", str(directory / "careless"), str(careless)], check=True)
    control = subprocess.run([str(directory / "careless")], capture_output=True, text=True,
                             env=dict(os.environ, LD_PRELOAD=library, FREE_CHECK_MARKER="918273"))
    assert "FREE_CHECK" in control.stderr, "the checker misses an unzeroed free"
    return library


def test_code_and_password_are_zeroed_before_they_are_freed(daemon, make_user, pam_service, pam_driver, free_check):
    plain = pam_service([f"auth required {PAM_MODULE} socket={daemon.socket}", "auth required pam_permit.so"])
    forward = pam_service([f"auth required {PAM_MODULE} socket={daemon.socket} forward_pass",
                           "auth required pam_permit.so"])
    wrong_user, right_user = make_user(), make_user()
    wrong = daemon.enroll(wrong_user.name)
    right = daemon.enroll(right_user.name)
    bad, good = wrong_code(wrong.secret), right.code(steps_ahead=1)
    password = "Pw" + wrong_user.password[3:]
    cases = [
        (plain, bad, [f"{wrong.user}:{bad}:{PAM_AUTH_ERR}"]),                      # rejected code
        (plain, good, [f"{right.user}:{good}:{PAM_SUCCESS}"]),                     # accepted code
        (plain, "7" * 1000, [f"{wrong.user}:{'7' * 1000}:{PAM_AUTH_ERR}"]),        # refused locally
        (forward, password, [f"{wrong.user}:{password}{bad}:{PAM_AUTH_ERR}"]),     # the password part
        (forward, bad, [f"{wrong.user}:{password}{bad}:{PAM_AUTH_ERR}"]),          # the code part
    ]
    for service, marker, specs in cases:
        result = subprocess.run([pam_driver, service, "1", "1", "0", *specs], capture_output=True, text=True,
                                timeout=60, env=dict(os.environ, LD_PRELOAD=free_check, FREE_CHECK_MARKER=marker))
        assert result.returncode == 0, (marker[:20], result.stdout, result.stderr)
        assert "FREE_CHECK" not in result.stderr, (marker[:20], result.stderr)


# --- the shipped example stacks -----------------------------------------------------------------

def example_stack(name, daemon):
    """pam.d/NAME with the module's absolute path and the test daemon's socket."""
    with open(os.path.join(HERE, "..", "..", "pam.d", name)) as f:
        text = f.read()
    assert re.search(r"^auth\s+required\s+pam_twofactor\.so\s*$", text, re.M), text
    return [re.sub(r"\bpam_twofactor\.so\b", f"{PAM_MODULE} socket={daemon.socket}", line)
            for line in text.splitlines()]


@pytest.mark.parametrize("example", ["sshd-twofactor.example", "sudo-twofactor.example"])
def test_example_stacks_ask_password_then_code(daemon, user, pam_service, example):
    service = pam_service(example_stack(example, daemon))
    enrollment = daemon.enroll(user.name)
    ok = Run(service, user.name, [user.password, enrollment.code(steps_ahead=1)])
    assert ok.outcome == "success", ok
    assert "Password: " in ok.output and DEFAULT_PROMPT in ok.output

    wrong = Run(service, user.name, [user.password, wrong_code(enrollment.secret)])
    assert wrong.outcome == "auth_err", wrong
    assert INCORRECT in wrong.output


# --- the clock hint -----------------------------------------------------------------------------

def test_wrong_code_with_a_bad_server_clock_hints_at_the_clock(daemon_factory, user, pam_service):
    ntp = FakeNTPServer(skew=-120)  # true time 120 s behind this clock
    try:
        daemon = daemon_factory(ntp_servers=f"127.0.0.1:{ntp.port}", ntp_samples=1, ntp_interval=1,
                                clock_warn_threshold=10)
        deadline = time.time() + 20
        while time.time() < deadline:
            status = daemon.request("clockStatus")
            if status.get("clockOffsetMicros") is not None and status.get("clockState") == "bad":
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the daemon never measured the clock: {status}\n{daemon.log()}")
        begun = daemon.request("enrollBegin", {"user": user.name})
        secret = begun["secret"]
        # With clock compensation the daemon judges codes by the NTP time; without, by its own.
        confirmed = daemon.request("enrollConfirm", {"user": user.name, "code": totp(secret, at=time.time() - 120)})
        if confirmed.status != "ok":
            confirmed = daemon.request("enrollConfirm", {"user": user.name, "code": totp(secret)})
        assert confirmed.status == "ok", confirmed
        service = pam_service(observing_stack(f"socket={daemon.socket}"))
        run = Run(service, user.name, [wrong_code(secret)])
        assert run.outcome == "auth_err", run
        assert INCORRECT in run.output
        match = re.search(r"server's clock may be wrong \(off by about (\d+) seconds\)", run.output)
        assert match, run
        assert 110 <= int(match.group(1)) <= 130, run
        # One wording (Product.clockHint): the message the daemon sends any client with the
        # rejection is the module's second line, word for word.
        raw = daemon.request("verify", {"user": user.name, "code": wrong_code(secret)})
        assert raw.status == "wrongCode" and raw["message"].startswith("The server's clock may be wrong"), raw
        assert raw["message"] in run.output.splitlines(), (raw, run)
    finally:
        ntp.close()


def test_the_daemon_is_asked_about_the_passwd_name_not_what_was_typed(pam_service, daemon, enrolled):
    """NSS may resolve another spelling (case, alias) to the same account; the module asks the
    daemon about the passwd name, and a typed name with no passwd entry is refused, never
    waved through as "not enrolled". Here PAM_IGNORE would let the stack succeed."""
    service = pam_service([f"auth required {PAM_MODULE} socket={daemon.socket}",
                           "auth required pam_permit.so",
                           "account required pam_permit.so"])
    typed = enrolled.user.upper()
    refused = pamtester(service, typed, [])
    output = (refused.stdout + refused.stderr).decode("utf-8", "replace")
    assert refused.returncode == 1, output
    assert OUTCOMES["ignore"] in output, output  # PAM_USER_UNKNOWN's text
    assert "Two-factor" not in output, output  # no code was asked for a name with no account
    logged_in = pamtester(service, enrolled.user, [enrolled.code(steps_ahead=1)])
    assert logged_in.returncode == 0, logged_in


# --- who answers ----------------------------------------------------------------------------------

# What an impostor listening at the socket path would answer: yes to everything.
ACCEPT_EVERYTHING = {"check": ENROLLED, "verify": wire.encode_frame(0x01)}


@pytest.mark.parametrize("failmode", BOTH_FAILMODES)
def test_a_socket_served_by_another_user_is_not_believed(make_user, pam_service, fake_peer, syslog, failmode):
    target, impostor, daemon_user = make_user(), make_user(), make_user()
    peer = fake_peer(ACCEPT_EVERYTHING, uid=impostor.uid, gid=impostor.gid)
    missing = helpers.unique_name("tfnone")
    cases = {
        "": f"an untrusted peer (uid {impostor.uid}: ",  # the default daemon_user, twofactor
        f"daemon_user={daemon_user.name}":
            f"an untrusted peer (uid {impostor.uid}: neither root nor daemon_user {daemon_user.name} (uid {daemon_user.uid}))",
        f"daemon_user={missing}": f"an untrusted peer (uid {impostor.uid}: not root, and daemon_user {missing} does not exist)",
    }
    for option, why in cases.items():
        service = pam_service(login_stack(f"socket={peer.path} {failmode} {option}"))
        run = Run(service, target.name, ["000000"], syslog=syslog)
        assert run.outcome == "authinfo_unavail", (option, run)
        assert DEFAULT_PROMPT not in run.output, run
        logged = syslog.text()
        assert f"gave no usable answer to check: {why}" in logged, (option, logged)
        assert f"refusing user {target.name}" in logged, logged
    # Refused before anything was sent: the impostor did not even learn the user name.
    assert peer.requests() == []


def test_a_socket_served_by_root_is_believed(user, pam_service, fake_peer):
    peer = fake_peer(ACCEPT_EVERYTHING)
    run = Run(pam_service(login_stack(f"socket={peer.path} daemon_user=nobody")), user.name, ["000000"])
    assert run.outcome == "success", run
    assert peer.requests() == ["check", "verify"]


def test_a_daemon_running_as_daemon_user_is_believed(make_user, pam_service):
    """The real twofactord, run as a throwaway account named by daemon_user=."""
    account, runner = make_user(), make_user()
    daemon = Daemon(None)
    try:
        for directory, _, files in os.walk(daemon.dir):
            for name in [directory, *(os.path.join(directory, f) for f in files)]:
                os.chown(name, runner.uid, runner.gid)
        daemon.start(wrapper=["setpriv", f"--reuid={runner.uid}", f"--regid={runner.gid}", "--clear-groups"])
        enrollment = daemon.enroll(account.name)
        believed = pam_service(login_stack(f"socket={daemon.socket} daemon_user={runner.name}"))
        ok = Run(believed, account.name, [enrollment.code(steps_ahead=1)])
        assert ok.outcome == "success", ok
        wrong = Run(believed, account.name, [wrong_code(enrollment.secret)])
        assert wrong.outcome == "auth_err", wrong
        # Without the option only root and the default account (twofactor) are believed.
        default = Run(pam_service(login_stack(f"socket={daemon.socket} failmode=open")), account.name,
                      [enrollment.code(steps_ahead=1)])
        assert default.outcome == "authinfo_unavail", default
    finally:
        daemon.destroy()


# --- names are bytes ------------------------------------------------------------------------------

@pytest.fixture
def named_users():
    """named_users(name, ...) creates real accounts with exactly these names (useradd takes
    non-ASCII names as they are) and removes them afterwards."""
    made = []

    def make(*names):
        for name in names:
            subprocess.run(["useradd", name], check=True, capture_output=True)
            made.append(name)
    yield make
    for name in made:
        subprocess.run(["userdel", "--force", name], capture_output=True)


def test_a_canonically_equivalent_name_is_another_account(daemon, pam_service, named_users, syslog):
    """"jose" + U+0301 and "jos" + U+00E9 look alike and are equal as Swift Strings, but they are
    different accounts: logging in as the decomposed one asks about the decomposed account."""
    base = helpers.unique_name("tfj")
    composed, decomposed = base + "\u00e9", base + "e\u0301"
    named_users(composed, decomposed)
    enrollment = daemon.enroll(composed)
    service = pam_service(observing_stack(f"socket={daemon.socket} debug"))

    lookalike = Run(service, decomposed, [enrollment.code(steps_ahead=1)], syslog=syslog)
    assert lookalike.outcome == "ignore", lookalike  # not enrolled: the composed account's 2FA is not its own
    assert DEFAULT_PROMPT not in lookalike.output, lookalike
    logged = syslog.text()
    # printable() shows each non-ASCII byte as "?": 2 for U+00E9, "e" and 2 for U+0301.
    assert f"user {base}e?? has no two-factor authentication" in logged, logged

    owner = Run(service, composed, [enrollment.code(steps_ahead=1)])
    assert owner.outcome == "success", owner
