"""The twofactor test kit: everything the integration tests and the demo (scripts/demo_login.py)
build on, each piece defined once. Start here; the fixtures that wrap these are in conftest.py.

helpers.py (this module; no pytest needed, so scripts import it too)
  paths        TWOFACTORD, TWOFACTOR_CLI, PAM_MODULE: the product under test, from the environment
               variables of the same names (default: the installed product)
  texts        CODE_PROMPT (the module's code prompt), WRONG_CODE_MESSAGE, ENABLE_PROMPT (what
               `twofactor enable` asks), CLI_ENV (a plain environment for the command line)
  names        unique_name(prefix), free_port(), unused_uid()
  safety net   register_cleanup(key, action) / done_cleanup(key) / run_pending_cleanups(): what a
               killed run must still undo (sshd processes, files under /etc) runs at exit
  codes        totp() (oathtool, never the product), fresh_code(), wrong_code() (right shape,
               valid nowhere near now), Codes (one enrollment's codes, none handed out twice)
  command line cli_command(user, *args, socket=None): `twofactor ARGS` as a user (runuser)
  enrolling    enroll(request, user, at=None) over the wire as root, the one enroll helper:
               Daemon.enroll and e2e's InstalledDaemon.enroll use it; enable_with_stdin() runs
               `twofactor enable --json --code-stdin` as the user; parse_enable_screen() reads
               what `twofactor enable` shows in a terminal. Both return or build an Enrollment.
  Daemon       the real twofactord on a private socket, store and key (NTP off, log on stderr)
  system       ThrowawayUser, ThrowawayGroup, PamService (/etc/pam.d/<name>), pamtester()
  fixtures     factory(make, finish): the body of a pytest factory fixture

ssh_kit.py       a throwaway sshd (ThrowawaySshd, pam_lines) and two SSH clients (paramiko_login,
                 OpenSshClient) answering prompts by their text: the sshd tests and the demo
fake_ntp_server.py  FakeNTPServer (127.0.0.1, chosen skew and bad answers), sntp_query()
twofactor_wire.py   the Python wire-protocol client (request(), as another uid, raw frames)
e2e.py           the end-to-end fixtures against the installed product: installed_daemon,
                 e2e_users, sshd_default/sshd_require, openssh_client, sudo_grant, AuditLog,
                 SystemGuard (nothing under /etc changed or left behind)
conftest.py      fixtures: daemon, daemon_factory, user, make_user, pam_service, fake_ntp, and
                 e2e.py's
pam_driver.c, kernel_clock_shim.c, slow_nss_shim.c  small C helpers some tests compile
"""
import atexit
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import twofactor_wire as wire

TWOFACTORD = os.environ.get("TWOFACTORD", "/usr/local/sbin/twofactord")
TWOFACTOR_CLI = os.environ.get("TWOFACTOR_CLI", "/usr/local/bin/twofactor")
PAM_MODULE = os.environ.get("TWOFACTOR_PAM_MODULE",
                            "/usr/lib/x86_64-linux-gnu/security/pam_twofactor.so")

CODE_PROMPT = "Two-factor authentication code (or recovery code): "
WRONG_CODE_MESSAGE = "Incorrect two-factor authentication code"
ENABLE_PROMPT = "Code from the app: "
CLI_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "TERM": "xterm"}


def unique_name(prefix="tf"):
    """Lowercase (libpam lowercases service names), short enough for a user name."""
    return f"{prefix}{os.getpid() % 100000}{secrets.token_hex(3)}"


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 free right now (TCP by default; socket.SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_text(path):
    """The file's text ("" if it does not exist yet): logs of processes we started."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- safety net ---------------------------------------------------------------------------------

_pending_cleanups = {}


def register_cleanup(key, action):
    """`action` runs at exit unless done_cleanup(key) came first: the last resort when a
    fixture's teardown never ran (an interrupted session)."""
    _pending_cleanups[key] = action


def done_cleanup(key):
    _pending_cleanups.pop(key, None)


@atexit.register
def run_pending_cleanups():
    for action in list(_pending_cleanups.values()):
        try:
            action()
        except Exception:
            pass
    _pending_cleanups.clear()


# --- codes, computed independently of the product -------------------------------------------

def totp(secret_b32, at=None, digits=6, algorithm="SHA1", period=30):
    """The TOTP code for `secret_b32` at unix time `at` (default now), from oathtool."""
    when = int(time.time() if at is None else at)
    out = subprocess.run(
        ["oathtool", f"--totp={algorithm}", "-b", "-d", str(digits), "-s", f"{period}s",
         "-N", f"@{when}", secret_b32],
        check=True, capture_output=True, text=True)
    return out.stdout.strip()


def fresh_code(secret_b32, steps_ahead=0, **kwargs):
    """A code for now + steps_ahead periods: with the default window of 1, steps_ahead=1 gives a
    second valid code that is newer than the current one (so it is not a replay)."""
    return totp(secret_b32, at=time.time() + kwargs.get("period", 30) * steps_ahead, **kwargs)


# Distinctive digits: the memory hygiene test (test_pam.py) looks for the wrong code in freed
# memory, so it must not look like anything else there (000000, 123456 ...).
_WRONG_CANDIDATES = ("918273", "582914", "736405", "264819", "493726")
_NEAR_STEPS = 10  # wider than any window, drift or clock offset the tests configure


def wrong_code(secret_b32, digits=6, period=30, algorithm="SHA1"):
    """A code of the right shape that no step within _NEAR_STEPS of now produces."""
    first = (int(time.time()) // period - _NEAR_STEPS) * period
    out = subprocess.run(
        ["oathtool", f"--totp={algorithm}", "-b", "-d", str(digits), "-s", f"{period}s",
         "-w", str(2 * _NEAR_STEPS), "-N", f"@{first}", secret_b32],
        check=True, capture_output=True, text=True)
    near = set(out.stdout.split())
    for candidate in _WRONG_CANDIDATES:
        candidate = (candidate * 2)[:digits]
        if candidate not in near:
            return candidate
    raise AssertionError("every candidate wrong code is valid near now")


class Codes:
    """TOTP codes for one enrollment, from oathtool, handed out so that none is used twice.

    The daemon accepts each step at most once and only within `window` (1) steps of now, so
    next_code() returns the code of the oldest step not yet handed out that is not older than
    now; when that step is more than one period ahead it waits for the next period."""

    def __init__(self, secret, digits=6, period=30, algorithm="SHA1"):
        self.secret = secret
        self.digits = digits
        self.period = period
        self.algorithm = algorithm
        self.last_step = None

    def step_now(self):
        return int(time.time()) // self.period

    def at_step(self, step):
        return totp(self.secret, at=step * self.period, digits=self.digits,
                    algorithm=self.algorithm, period=self.period)

    def at_time(self, when):
        """The code for unix time `when`, marked as handed out."""
        step = int(when) // self.period
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        return self.at_step(step)

    def current(self):
        """The code of the current step, marked as handed out (what enrollment confirms with)."""
        return self.at_time(time.time())

    def next_code(self):
        step = self.step_now()
        if self.last_step is not None:
            step = max(step, self.last_step + 1)
        while step > self.step_now() + 1:
            time.sleep(max(0.05, (step - 1) * self.period - time.time() + 0.2))
        self.last_step = step
        return self.at_step(step)

    def wrong_code(self):
        return wrong_code(self.secret, self.digits, self.period, self.algorithm)

    @classmethod
    def of(cls, details):
        """The codes for the key in `details` (a wire response or `twofactor enable --json`)."""
        return cls(details["secret"], digits=details.get("digits", 6),
                   period=details.get("period", 30), algorithm=details.get("algorithm", "SHA1"))


# --- enrolling ----------------------------------------------------------------------------------

class Enrollment:
    def __init__(self, user, secret, uri, recovery_codes, codes):
        self.user = user
        self.secret = secret            # base32 text, as shown to the person
        self.uri = uri
        self.recovery_codes = list(recovery_codes)
        self.codes = codes              # a Codes; the confirming code is marked as handed out

    def code(self, steps_ahead=0):
        c = self.codes
        return fresh_code(self.secret, steps_ahead, digits=c.digits, algorithm=c.algorithm,
                          period=c.period)


def enroll(request, user, at=None):
    """enrollBegin + enrollConfirm through `request` (a Daemon's or an InstalledDaemon's), as
    root, confirmed with oathtool's code for unix time `at` (default now)."""
    begun = request("enrollBegin", {"user": user})
    assert begun.status == "ok", f"enrollBegin {user}: {begun!r}"
    codes = Codes.of(begun)
    code = codes.current() if at is None else codes.at_time(at)
    confirmed = request("enrollConfirm", {"user": user, "code": code})
    assert confirmed.status == "ok", f"enrollConfirm {user}: {confirmed!r}"
    assert len(confirmed.get("recoveryCode", [])) == 8, confirmed
    return Enrollment(user, begun["secret"], begun["uri"], confirmed["recoveryCode"], codes)


class CliEnable:
    """What enable_with_stdin() saw. Unpacks as (exit status, the first JSON line of standard
    output (the key), the rest of standard output, standard error)."""

    def __init__(self, user, status, pending, out, err, codes):
        self.user, self.status, self.pending, self.out, self.err = user, status, pending, out, err
        self.codes = codes  # the confirming code is marked as handed out

    def __iter__(self):
        return iter((self.status, self.pending, self.out, self.err))

    def enrollment(self):
        """The Enrollment, after checking that the command succeeded."""
        assert self.status == 0, f"twofactor enable as {self.user} exited {self.status}: {self.err}"
        result = json.loads(self.out)
        assert result["user"] == self.user and result["secret"] == self.pending["secret"], result
        assert len(result["recovery_codes"]) == 8, result
        return Enrollment(self.user, self.pending["secret"], result["uri"], result["recovery_codes"],
                          self.codes)


def cli_command(user, *args, socket=None):
    """The argv of `twofactor ARGS [--socket SOCKET]` run as `user` (a name) through runuser, so
    the daemon's SO_PEERCRED sees that user; as the caller (root) for user=None."""
    command = [TWOFACTOR_CLI, *args]
    if socket is not None:
        command += ["--socket", socket]
    return command if user is None else ["runuser", "-u", user, "--", *command]


def enable_with_stdin(user, *extra, socket=None, env=None, timeout=60):
    """`twofactor enable --json --code-stdin EXTRA [--socket SOCKET]` run as `user` (a name)
    through runuser, with no terminal: reads the first JSON line on standard output (the key) and
    answers with oathtool's code for it. Returns a CliEnable."""
    command = cli_command(user, "enable", "--json", "--code-stdin", *extra, socket=socket)
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**CLI_ENV, **(env or {})},
                               cwd="/")
    watchdog = threading.Timer(timeout, process.kill)  # a hang fails instead of blocking
    watchdog.start()
    try:
        pending = json.loads(process.stdout.readline())
        codes = Codes(pending["secret"], digits=pending["digits"], algorithm=pending["algorithm"],
                      period=pending["period"])
        out, err = process.communicate(codes.current() + "\n", timeout=timeout)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    return CliEnable(user, process.returncode, pending, out, err, codes)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_enable_screen(screen):
    """(secret, uri) as shown by `twofactor enable` in text mode."""
    text = ANSI.sub("", screen).replace("\r", "")
    grouped = re.search(r"^ {4}((?:[A-Z2-7]{4} )+[A-Z2-7]{1,4})\s*$", text, re.M)
    assert grouped, text
    secret = grouped.group(1).replace(" ", "")
    uri = re.search(r"^otpauth URI: (\S+)$", text, re.M).group(1)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    assert query["secret"] == [secret], (secret, uri)
    return secret, uri


# --- the daemon ---------------------------------------------------------------------------------

def process_group_members(pgid):
    """Pids of the processes of group `pgid` still running (zombies do not count: their files
    and sockets are already closed)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, _ppid, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry))
    return members


def wait_until_group_gone(pgid, timeout=10):
    """Waits until no process of group `pgid` runs. Reaping the group's leader is not enough:
    a child it started (the daemon under strace or faketime) dies a moment later, and until then
    it still holds its socket, where a restarted daemon's first client would land."""
    deadline = time.time() + timeout
    while process_group_members(pgid) and time.time() < deadline:
        time.sleep(0.02)


class Daemon:
    """The real twofactord binary on a private socket, store and key, NTP off, log on stderr."""

    def __init__(self, workdir, overrides=None):
        # Our own directory under /tmp, traversable by other uids (pytest's tmp is 0700), so
        # tests can connect as non-root users.
        self.dir = tempfile.mkdtemp(prefix="tfd-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "twofactord.sock")
        self.state_dir = os.path.join(self.dir, "state")
        self.key_file = os.path.join(self.dir, "secret.key")
        self.config_path = os.path.join(self.dir, "twofactord.conf")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.config = {
            "socket": self.socket,
            "state_directory": self.state_dir,
            "key_file": self.key_file,
            "log": "stderr",
            "ntp_servers": "",
            "issuer": "twofactor-test",
        }
        self.config.update({k: ("yes" if v is True else "no" if v is False else v)
                            for k, v in (overrides or {}).items()})
        self.socket = self.config["socket"]
        self.process = None
        self._log_file = None

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write("# written by the integration tests\n")
            for key, value in self.config.items():
                f.write(f"{key} = {value}\n")

    def start(self, timeout=15, extra_args=(), wrapper=()):
        self.write_config()
        self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*wrapper, TWOFACTORD, "--config", self.config_path, *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
            # Its own process group: a wrapper such as faketime forks the daemon as a child, and
            # stop() must reach the daemon, not orphan it.
            start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"twofactord exited with {self.process.returncode}:\n{self.log()}")
            try:
                with wire.connect(self.socket, timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"twofactord did not listen on {self.socket} in {timeout}s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the daemon we started (by its pid) and returns its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            # Under a wrapper (faketime forks the daemon) only the daemon is signalled: the wrapper
            # then exits by itself and cleans up (a killed faketime leaves its semaphore behind,
            # and a later faketime that gets the same pid fails).
            wrapped = [pid for pid in process_group_members(self.process.pid) if pid != self.process.pid]
            for pid in wrapped or [self.process.pid]:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        # Make sure nothing of ours is left, and wait until it is gone: a restart must not find
        # the old daemon still holding the socket.
        self._signal_group(signal.SIGKILL)
        wait_until_group_gone(self.process.pid)
        code = self.process.returncode
        self.process = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return code

    def _signal_group(self, sig):
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def restart(self):
        self.stop()
        return self.start()

    def destroy(self):
        self.stop(signal.SIGKILL if self.process and self.process.poll() is None else signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        return read_text(self.log_path)

    def request(self, op, fields=(), **kwargs):
        return wire.request(self.socket, op, fields, **kwargs)

    def enroll(self, user, at=None):
        """Enrolls `user` through the daemon (as root) and confirms with an oathtool code."""
        return enroll(self.request, user, at)


# --- throwaway system objects -------------------------------------------------------------------

def unused_uid():
    """A random uid that no account or group has, from a range useradd does not hand out by
    itself, so no earlier (just deleted) account had it: the daemon identifies callers by uid."""
    while True:
        uid = 30000 + secrets.randbelow(29000)
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid


class ThrowawayUser:
    """A real Unix account with a random password and home directory; remove() deletes both."""

    def __init__(self, prefix="tfu", groups=(), name=None, uid=None):
        self.name = name or unique_name(prefix)
        self.password = "pw-" + secrets.token_urlsafe(12)
        uid_option = [] if uid is None else ["--uid", str(uid)]
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", *uid_option, self.name],
                       check=True, capture_output=True)
        try:
            subprocess.run(["chpasswd"], input=f"{self.name}:{self.password}\n", text=True,
                           check=True, capture_output=True)
            for group in groups:
                subprocess.run(["usermod", "-aG", group, self.name], check=True, capture_output=True)
        except Exception:
            self.remove()
            raise
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, entry.pw_dir

    def remove(self):
        subprocess.run(["userdel", "--force", "--remove", self.name], capture_output=True)


class ThrowawayGroup:
    def __init__(self, prefix="tfg"):
        self.name = unique_name(prefix)
        subprocess.run(["groupadd", self.name], check=True, capture_output=True)
        self.gid = grp.getgrnam(self.name).gr_gid

    def remove(self):
        subprocess.run(["groupdel", self.name], capture_output=True)


class PamService:
    """/etc/pam.d/<name>; the name must be lowercase because libpam lowercases it. Removed at
    exit at the latest (safety net)."""

    def __init__(self, name, lines, comment="the twofactor integration tests"):
        assert name == name.lower()
        self.name = name
        self.path = os.path.join("/etc/pam.d", name)
        assert not os.path.exists(self.path), self.path
        register_cleanup(("pam", name), self.remove)
        with open(self.path, "w") as f:
            f.write(f"# throwaway PAM service of {comment}\n")
            f.write("\n".join(lines) + "\n")

    def remove(self):
        unlink_quietly(self.path)
        done_cleanup(("pam", self.name))


def pamtester(service, user, answers, operation="authenticate", timeout=30, env=None, wrapper=(),
              items=None):
    """Runs pamtester (under `wrapper`, a command prefix, if given); `answers` are the
    conversation replies, one per line on stdin; `items` PAM items to set ({"rhost": "192.0.2.7"}).
    Returns the CompletedProcess (pamtester exits 0 on success)."""
    text = "".join(a + "\n" for a in answers)
    options = [f"-I{key}={value}" for key, value in (items or {}).items()]
    return subprocess.run([*wrapper, "pamtester", "-v", *options, service, user, operation], input=text.encode(),
                          capture_output=True, timeout=timeout, env=env)


# --- fixtures -----------------------------------------------------------------------------------

def daemons(tmp_path_factory, defaults=None, finish=None):
    """The body of every daemon factory fixture (`yield from daemons(tmp_path_factory)`): the
    test gets start(**overrides), which starts a private Daemon with `defaults` under `overrides`;
    afterwards each is finished (default: Daemon.destroy), also one that failed to start."""
    finish = finish or Daemon.destroy

    def start(**overrides):
        d = Daemon(tmp_path_factory.mktemp("twofactord"), {**(defaults or {}), **overrides})
        try:
            return d.start()
        except BaseException:
            finish(d)
            raise

    yield from factory(start, finish)


def factory(make, finish, give=lambda thing: thing):
    """The body of a pytest factory fixture (`yield from factory(Thing, Thing.close)`): the test
    gets a function that calls make(...) and returns give(what it made); afterwards finish(thing)
    runs for each, also when the test failed, and the first error is raised once all are done."""
    made = []

    def create(*args, **kwargs):
        thing = make(*args, **kwargs)
        made.append(thing)
        return give(thing)

    try:
        yield create
    finally:
        errors = []
        for thing in made:
            try:
                finish(thing)
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]
