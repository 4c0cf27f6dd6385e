"""End-to-end logins through a real sshd and a real sudo (issue 6).

Everything here runs the real programs: a throwaway OpenSSH server started from the system's
/usr/sbin/sshd (through a symlink, so its PAM service is /etc/pam.d/sshd-<unique>), the system's
sudo with a throwaway /etc/sudoers.d file that gives one throwaway user its own PAM service, the
installed pam_twofactor.so (helpers.PAM_MODULE) and the installed, running twofactord on its
default socket. Codes come from oathtool (helpers.totp), never from the product.

Nothing of the system's own configuration is edited: /etc/pam.d/sshd, /etc/pam.d/sudo and
/etc/sudoers are hashed at the start and compared at the end (SystemGuard), and every file, user,
process and daemon account the tests create is removed on every exit path (fixtures with
finally, plus an atexit safety net for the sshd processes and the files under /etc).

The fixtures are defined at the end of this file and exposed through conftest.py.
"""
import atexit
import glob
import grp
import hashlib
import io
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
import warnings

import pytest

import helpers
import twofactor_wire as wire

DEFAULT_SOCKET = "/run/twofactor/twofactord.sock"
SSHD = "/usr/sbin/sshd"
CODE_PROMPT = "Two-factor authentication code (or recovery code): "
WRONG_CODE_MESSAGE = "Incorrect two-factor authentication code"
PROTECTED_FILES = ("/etc/pam.d/sshd", "/etc/pam.d/sudo", "/etc/sudoers")
# Everything this run creates (users, PAM services, sudoers files) is named with this prefix, so
# sshd's AllowUsers can name exactly this run's users and leftovers are easy to find.
RUN_PREFIX = "tfe" + secrets.token_hex(2)
# Development only: TWOFACTOR_E2E_DEV_DAEMON=1 runs a private daemon (helpers.Daemon, the
# TWOFACTORD binary) instead of requiring the installed one. The test runner never sets it.
DEV_DAEMON = os.environ.get("TWOFACTOR_E2E_DEV_DAEMON") == "1"


# --- safety net ---------------------------------------------------------------------------------

_pending_cleanups = {}


def _register_cleanup(key, action):
    _pending_cleanups[key] = action


def _done_cleanup(key):
    _pending_cleanups.pop(key, None)


@atexit.register
def _run_pending_cleanups():
    """Last resort if a fixture's teardown never ran (e.g. an interrupted session)."""
    for action in list(_pending_cleanups.values()):
        try:
            action()
        except Exception:
            pass
    _pending_cleanups.clear()


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _new_name():
    return helpers.unique_name(RUN_PREFIX)


# --- the system must come out of the run as it went in -----------------------------------------

def sha256_of(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def _throwaway_candidates():
    paths = set()
    for pattern in ("/etc/pam.d/tf*", "/etc/pam.d/sshd-tf*", "/etc/sudoers.d/tf*",
                    f"/etc/sudoers.d/.{RUN_PREFIX}*"):
        paths.update(glob.glob(pattern))
    return paths


class SystemGuard:
    """Records the protected files' hashes and the throwaway files present at the start."""

    def __init__(self):
        self.hashes = {path: sha256_of(path) for path in PROTECTED_FILES}
        self.present_at_start = _throwaway_candidates()

    def problems(self, at_end=True):
        """What is wrong now. Mid-run (at_end=False) only this module's own leftovers count:
        other tests' throwaway PAM services may legitimately exist while they run."""
        found = []
        for path, digest in self.hashes.items():
            now = sha256_of(path)
            if now != digest:
                found.append(f"{path} changed during the run: sha256 {digest} -> {now}")
        for path in sorted(_throwaway_candidates() - self.present_at_start):
            if at_end or RUN_PREFIX in path:
                found.append(f"{path} was left behind by this run")
        with open("/etc/passwd") as f:
            for line in f:
                if line.startswith(RUN_PREFIX):
                    found.append(f"user {line.split(':')[0]} was left behind by this run")
        return found


# --- the daemon (the installed one, on its default socket) -------------------------------------

def daemon_setting(key, config=None):
    """A key's value in effect for the daemon, as twofactord itself reads its config file
    (`--print-config`; None: the default file, where a missing file means the defaults)."""
    command = [helpers.TWOFACTORD, "--print-config"] + (["--config", config] if config else [])
    printed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split(" = ", 1) for line in printed.stdout.splitlines())[key]


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
        return helpers.totp(self.secret, at=step * self.period, digits=self.digits,
                            algorithm=self.algorithm, period=self.period)

    def current(self):
        """The code of the current step, marked as handed out (what enrollment confirms with)."""
        step = self.step_now()
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        return self.at_step(step)

    def next_code(self):
        step = self.step_now()
        if self.last_step is not None:
            step = max(step, self.last_step + 1)
        while step > self.step_now() + 1:
            time.sleep(max(0.05, (step - 1) * self.period - time.time() + 0.2))
        self.last_step = step
        return self.at_step(step)

    def wrong_code(self):
        """A code of the right shape that no step near now produces."""
        near = set()
        first = (self.step_now() - 10) * self.period
        out = subprocess.run(
            ["oathtool", f"--totp={self.algorithm}", "-b", "-d", str(self.digits),
             "-s", f"{self.period}s", "-w", "20", "-N", f"@{first}", self.secret],
            check=True, capture_output=True, text=True)
        near.update(out.stdout.split())
        while True:
            candidate = "".join(secrets.choice("0123456789") for _ in range(self.digits))
            if candidate not in near:
                return candidate


class Enrollment:
    def __init__(self, user, secret, uri, recovery_codes, codes):
        self.user = user
        self.secret = secret
        self.uri = uri
        self.recovery_codes = list(recovery_codes)
        self.codes = codes


class InstalledDaemon:
    """The running twofactord, reached the way the PAM module and the CLI reach it."""

    def __init__(self, socket_path=DEFAULT_SOCKET, module_options=(), cli_environment=None, config=None):
        self.socket = socket_path
        # Options the PAM stacks pass to the module (only socket= in development mode).
        self.module_options = list(module_options)
        # Extra environment for the CLI (only TWOFACTOR_SOCKET in development mode).
        self.cli_environment = dict(cli_environment or {})
        self.max_failures = int(daemon_setting("max_failures", config))

    def check_answers(self):
        """Raises with a readable reason unless the daemon answers a `check` request."""
        try:
            answer = wire.request(self.socket, "check", {"user": "root"}, timeout=5)
        except (OSError, ConnectionError, ValueError) as error:
            raise RuntimeError(f"no answer on {self.socket}: {error!r}") from error
        if answer.status not in ("enrolled", "notEnrolled"):
            raise RuntimeError(f"unexpected answer to check on {self.socket}: {answer!r}")
        return answer

    def request(self, op, fields=()):
        return wire.request(self.socket, op, fields)

    def enroll(self, user):
        """enrollBegin + enrollConfirm as root, confirmed with an oathtool code."""
        begun = self.request("enrollBegin", {"user": user})
        assert begun.status == "ok", f"enrollBegin {user}: {begun!r}"
        codes = Codes(begun["secret"], digits=begun.get("digits", 6),
                      period=begun.get("period", 30), algorithm=begun.get("algorithm", "SHA1"))
        confirmed = self.request("enrollConfirm", {"user": user, "code": codes.current()})
        assert confirmed.status == "ok", f"enrollConfirm {user}: {confirmed!r}"
        assert len(confirmed.get("recoveryCode", [])) == 8, confirmed
        return Enrollment(user, begun["secret"], begun["uri"], confirmed["recoveryCode"], codes)

    def enroll_with_cli(self, user):
        """`twofactor enable --json --code-stdin` run as the user itself (no root involved): the
        key comes as the first JSON line on standard output, the code goes to standard input."""
        environment = [f"{name}={value}" for name, value in self.cli_environment.items()]
        process = subprocess.Popen(
            ["runuser", "-u", user, "--", "env", *environment, helpers.TWOFACTOR_CLI, "enable",
             "--qr=none", "--json", "--code-stdin"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd="/")
        watchdog = threading.Timer(30, process.kill)
        watchdog.start()
        try:
            details, before = None, []
            for line in process.stdout:
                before.append(line)
                if line.lstrip().startswith("{"):
                    details = json.loads(line)
                    break
            assert details and "secret" in details, f"no key on standard output: {before!r}"
            codes = Codes(details["secret"], digits=details.get("digits", 6),
                          period=details.get("period", 30),
                          algorithm=details.get("algorithm", "SHA1"))
            out, err = process.communicate(codes.current() + "\n")
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, (
            f"twofactor enable as {user} exited {process.returncode}: {''.join(before)}{err}")
        result = json.loads(out)
        assert result["user"] == user and result["secret"] == details["secret"], result
        assert len(result["recovery_codes"]) == 8, result
        return Enrollment(user, details["secret"], result["uri"], result["recovery_codes"], codes)

    def status(self, user):
        answer = self.request("status", {"user": user})
        assert answer.status == "ok", f"status {user}: {answer!r}"
        return answer

    def admin_unlock(self, user):
        """`twofactor admin unlock USER` with the installed command line, as root."""
        result = subprocess.run([helpers.TWOFACTOR_CLI, "admin", "unlock", user],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=30, env={**os.environ, **self.cli_environment})
        assert result.returncode == 0, (
            f"`twofactor admin unlock {user}` exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def forget(self, user):
        """Deletes the account's enrollment so the installed store keeps no throwaway rows."""
        answer = self.request("resetAccount", {"user": user})
        assert answer.status in ("ok", "notEnrolled"), f"resetAccount {user}: {answer!r}"


# --- the installed daemon's audit log --------------------------------------------------------

AUDIT_LOG = "/var/log/twofactord.log"  # scripts/daemon-service without systemd and syslog


class AuditLog:
    """The audit lines the installed daemon writes from now on: from the journal where systemd
    runs the daemon (scripts/daemon-service uses the units there), else from the log file that
    daemon-service gives it. Neither is a failure, never a skip: the audit assertions must run."""

    def __init__(self, path=AUDIT_LOG):
        self.path = path
        self.cursor = None
        if os.path.isdir("/run/systemd/system"):
            out = subprocess.run(["journalctl", "-u", "twofactord", "-n", "0", "--show-cursor", "-q"],
                                 capture_output=True, text=True, check=True).stdout
            cursors = [line.split("cursor: ", 1)[1] for line in out.splitlines() if "cursor: " in line]
            self.cursor = cursors[-1] if cursors else ""
            self.path = "journal (twofactord.service)"
            return
        assert os.path.exists(path), f"{path} does not exist and systemd does not run here: where " \
            "does the installed daemon's audit log go? (scripts/daemon-service writes it there)"
        self.start = os.path.getsize(path)

    def new_lines(self):
        if self.cursor is not None:
            command = ["journalctl", "-u", "twofactord", "-o", "cat", "-q", "--no-pager"]
            command += [f"--after-cursor={self.cursor}"] if self.cursor else []
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode(errors="replace").splitlines()

    def wait_for(self, *fields, timeout=5):
        """The first new line that contains every `key=value` in fields."""
        deadline = time.time() + timeout
        while True:
            for line in self.new_lines():
                words = line.split()
                if all(field in words for field in fields):
                    return line
            if time.time() > deadline:
                raise AssertionError(f"no audit line with {fields} in {self.path}; new lines:\n"
                                     + "\n".join(self.new_lines()))
            time.sleep(0.05)


# --- throwaway users ---------------------------------------------------------------------------

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


class RunUser(helpers.ThrowawayUser):
    """helpers.ThrowawayUser with this run's prefix and a chosen (by default fresh) uid."""

    def __init__(self, uid=None):
        self.name = _new_name()
        self.password = "pw-" + secrets.token_urlsafe(12)
        self.uid = unused_uid() if uid is None else uid
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--uid", str(self.uid),
                        self.name], check=True, capture_output=True)
        try:
            subprocess.run(["chpasswd"], input=f"{self.name}:{self.password}\n", text=True,
                           check=True, capture_output=True)
        except Exception:
            self.remove()
            raise
        entry = pwd.getpwnam(self.name)
        self.gid, self.home = entry.pw_gid, entry.pw_dir
        self.enrollment = None


def remove_sudo_traces(user):
    """sudo's per-user time stamp and lecture files, which outlive `userdel`."""
    for path in (f"/run/sudo/ts/{user}", f"/var/lib/sudo/lectured/{user}"):
        _unlink_quietly(path)


# --- PAM stacks --------------------------------------------------------------------------------

def pam_lines(module_options=(), auth_first=("auth required pam_unix.so nodelay",)):
    """The throwaway PAM service: the password, then the second factor."""
    options = " ".join(module_options)
    return [
        *auth_first,
        f"auth required {helpers.PAM_MODULE} {options}".rstrip(),
        "account required pam_unix.so",
        "session required pam_unix.so",
    ]


def write_pam_service(name, lines):
    _register_cleanup(("pam", name), lambda: _unlink_quietly(f"/etc/pam.d/{name}"))
    return helpers.PamService(name, lines)


def remove_pam_service(service):
    service.remove()
    _done_cleanup(("pam", service.name))


# --- a throwaway sshd --------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawaySshd:
    """The system's sshd binary under another name, on 127.0.0.1, with its own PAM service."""

    def __init__(self, module_options=(), allow_users=f"{RUN_PREFIX}*"):
        self.service = f"sshd-{_new_name()}"
        self.dir = tempfile.mkdtemp(prefix=f"{self.service}-", dir="/tmp")
        self.program = os.path.join(self.dir, self.service)  # argv[0] names the PAM service
        self.config = os.path.join(self.dir, "sshd_config")
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.module_options = list(module_options)
        self.allow_users = allow_users
        self.port = None
        self.process = None
        self.pam = None
        self.created_run_sshd = False

    def start(self, timeout=15):
        try:
            self._start(timeout)
        except BaseException:
            self.destroy()
            raise
        return self

    def _start(self, timeout):
        if not os.path.isdir("/run/sshd"):  # sshd's privilege separation directory
            os.makedirs("/run/sshd", mode=0o755)
            self.created_run_sshd = True
        self.pam = write_pam_service(self.service, pam_lines(self.module_options))
        os.symlink(SSHD, self.program)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.service,
                        "-f", self.host_key], check=True, capture_output=True)
        for attempt in range(3):
            self.port = free_port()
            self._write_config()
            checked = subprocess.run([self.program, "-t", "-f", self.config],
                                     capture_output=True, text=True)
            assert checked.returncode == 0, f"sshd -t refused {self.config}:\n{checked.stderr}"
            log = open(self.log_path, "w")
            with log:
                self.process = subprocess.Popen(
                    [self.program, "-D", "-f", self.config, "-E", self.log_path],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            _register_cleanup(("sshd", self.service), self.stop)
            if self._wait_listening(timeout):
                return
            self.stop()  # most likely someone took the port between free_port() and bind
        raise RuntimeError(f"sshd never listened:\n{self.log()}")

    def _write_config(self):
        with open(self.config, "w") as f:
            f.write(f"""# throwaway sshd of the twofactor end-to-end tests
ListenAddress 127.0.0.1:{self.port}
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
HostbasedAuthentication no
AuthenticationMethods keyboard-interactive
AuthorizedKeysFile none
PermitRootLogin no
AllowUsers {self.allow_users}
PermitEmptyPasswords no
MaxAuthTries 3
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
LogLevel VERBOSE
""")

    def _wait_listening(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "Server listening on" in self.log():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        """Stops the sshd we started, by its pid (sessions already open end on their own)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        _done_cleanup(("sshd", self.service))

    def destroy(self):
        try:
            self.stop()
        finally:
            if self.pam is not None:
                remove_pam_service(self.pam)
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.created_run_sshd:
                try:
                    os.rmdir("/run/sshd")
                except OSError:
                    pass


# --- ssh clients -------------------------------------------------------------------------------

class LoginResult:
    def __init__(self, client, authenticated, prompts, messages, output="", exit_status=None):
        self.client = client
        self.authenticated = authenticated
        self.prompts = prompts          # the prompt texts the server asked, in order
        self.messages = messages        # text the server showed besides prompts (PAM messages)
        self.output = output            # the command's standard output
        self.exit_status = exit_status

    def asked_for_code(self):
        return any(CODE_PROMPT.strip() in p for p in self.prompts)

    def asked_for_password(self):
        return any("password" in p.lower() for p in self.prompts)

    def __repr__(self):
        return (f"LoginResult({self.client}, authenticated={self.authenticated}, "
                f"prompts={self.prompts!r}, messages={self.messages!r}, "
                f"output={self.output!r}, exit_status={self.exit_status})")


def answer_for(prompt, password, code):
    """Answers a prompt by its text; anything unexpected gets an empty answer (and fails)."""
    if CODE_PROMPT.strip() in prompt:
        return code if code is not None else ""
    if "password" in prompt.lower():
        return password
    return ""


def paramiko_login(port, user, password, code=None, command="id -un", timeout=20):
    """keyboard-interactive with paramiko, then runs `command` if authenticated."""
    with warnings.catch_warnings():  # Debian's paramiko pulls in invoke, which imports `imp`
        warnings.simplefilter("ignore", DeprecationWarning)
        import paramiko  # apt's python3-paramiko, importable under /usr/bin/python3

    prompts, messages = [], []

    def handler(title, instructions, prompt_list):
        for text in (title, instructions):
            if text:
                messages.append(text)
        answers = []
        for text, _echo in prompt_list:
            prompts.append(text)
            answers.append(answer_for(text, password, code))
        return answers

    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=timeout)
        try:
            transport.auth_interactive(user, handler)
        except paramiko.AuthenticationException:
            return LoginResult("paramiko", False, prompts, messages)
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        output = channel.makefile("rb").read().decode(errors="replace")
        status = channel.recv_exit_status()
        return LoginResult("paramiko", True, prompts, messages, output, status)
    finally:
        transport.close()


ASKPASS_SCRIPT = """#!/bin/sh
# SSH_ASKPASS for the end-to-end tests: records the prompt, answers the password or the code.
printf '%s\\n' "$1" >> "$E2E_PROMPT_LOG"
case "$1" in
  *"Two-factor authentication code"*) printf '%s\\n' "$E2E_CODE" ;;
  *[Pp]assword*) printf '%s\\n' "$E2E_PASSWORD" ;;
  *) exit 1 ;;
esac
"""


class OpenSshClient:
    """OpenSSH's ssh, answering through SSH_ASKPASS (forced) with no terminal at all."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=f"{RUN_PREFIX}-ssh-", dir="/tmp")  # 0700, root's
        self.askpass = os.path.join(self.dir, "askpass")
        with open(self.askpass, "w") as f:
            f.write(ASKPASS_SCRIPT)
        os.chmod(self.askpass, 0o700)

    def login(self, port, user, password, code=None, command="id -un", timeout=30):
        prompt_log = os.path.join(self.dir, f"prompts-{secrets.token_hex(4)}")
        open(prompt_log, "w").close()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": self.dir,
            "SSH_ASKPASS": self.askpass,
            "SSH_ASKPASS_REQUIRE": "force",
            "E2E_PROMPT_LOG": prompt_log,
            "E2E_PASSWORD": password,
            "E2E_CODE": code if code is not None else "",
        }
        argv = ["ssh", "-F", "/dev/null", "-T", "-p", str(port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "PreferredAuthentications=keyboard-interactive",
                "-o", "PubkeyAuthentication=no", "-o", "BatchMode=no",
                # One keyboard-interactive round: a failed code is one failure, not three.
                "-o", "NumberOfPasswordPrompts=1",
                "-o", "ConnectTimeout=10", "-o", "LogLevel=INFO",
                f"{user}@127.0.0.1", command]
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout, start_new_session=True)
            with open(prompt_log) as f:
                prompts = [line.rstrip("\n") for line in f]
        finally:
            _unlink_quietly(prompt_log)
        authenticated = "Permission denied" not in done.stderr and done.returncode != 255
        return LoginResult("openssh", authenticated, prompts, [done.stderr], done.stdout,
                           done.returncode)

    def destroy(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# --- sudo --------------------------------------------------------------------------------------

class SudoGrant:
    """/etc/sudoers.d/<unique>: USER may run anything, authenticated by its own PAM service."""

    def __init__(self, user, module_options=(), extra_defaults=()):
        self.user = user
        self.extra_defaults = list(extra_defaults)
        self.name = _new_name()  # no dot: sudo's includedir skips names with one
        self.path = f"/etc/sudoers.d/{self.name}"
        self.pam = None
        _register_cleanup(("sudoers", self.name), self.remove)
        try:
            self.pam = write_pam_service(self.name, pam_lines(module_options))
            self._install()
        except BaseException:
            self.remove()
            raise

    def _install(self):
        text = (f"# throwaway grant of the twofactor end-to-end tests\n"
                f"Defaults:{self.user} pam_service={self.name}\n"
                f"Defaults:{self.user} passwd_tries=1, lecture=never, !mail_badpass\n"
                + "".join(f"Defaults:{self.user} {d}\n" for d in self.extra_defaults) +
                f"{self.user} ALL=(ALL:ALL) ALL\n")
        # Written under a dotted name (ignored by sudo), checked, then renamed into place.
        staging = f"/etc/sudoers.d/.{self.name}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o440)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            checked = subprocess.run(["visudo", "-cf", staging], capture_output=True, text=True)
            assert checked.returncode == 0, f"visudo -cf refused the grant:\n{checked.stdout}{checked.stderr}"
            os.rename(staging, self.path)
        finally:
            _unlink_quietly(staging)
        whole = subprocess.run(["visudo", "-c"], capture_output=True, text=True)
        assert whole.returncode == 0, f"visudo -c fails with the grant in place:\n{whole.stdout}{whole.stderr}"

    def remove(self):
        _unlink_quietly(self.path)
        _unlink_quietly(f"/etc/sudoers.d/.{self.name}")
        if self.pam is not None:
            remove_pam_service(self.pam)
        _done_cleanup(("sudoers", self.name))


class SudoResult:
    def __init__(self, exit_status, transcript, prompts):
        self.exit_status = exit_status
        self.transcript = transcript
        self.prompts = prompts

    def printed_line(self, text):
        return re.search(rf"^{re.escape(text)}\r?$", self.transcript, re.M) is not None

    def __repr__(self):
        return f"SudoResult(exit={self.exit_status}, prompts={self.prompts!r}, transcript={self.transcript!r})"


def sudo_as(user, password, code=None, command="id -u", timeout=30):
    """`su --pty - USER -c 'sudo -k; sudo COMMAND'` under a pseudo-terminal, answering the
    password prompt and, if asked, the code prompt."""
    import pexpect

    transcript = io.StringIO()
    child = pexpect.spawn("su", ["--pty", "-", user, "-c", f"sudo -k; sudo {command}"],
                          timeout=timeout, encoding="utf-8", codec_errors="replace",
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb",
                               "LANG": "C"})
    child.logfile_read = transcript
    prompts = []
    try:
        child.expect(rf"\[sudo\] password for {re.escape(user)}: ")
        prompts.append(child.after)
        child.sendline(password)
        asked = child.expect([re.escape(CODE_PROMPT), pexpect.EOF])
        if asked == 0:
            prompts.append(child.after)
            child.sendline(code if code is not None else "")
            child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return SudoResult(child.exitstatus, transcript.getvalue(), prompts)


def root_sudo_works():
    """Root's own sudo must not prompt or fail because of anything the tests installed."""
    results = [subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30)
               for argv in (["sudo", "-n", "true"], ["sudo", "-n", "-u", "nobody", "true"])]
    return results


# --- fixtures (exposed through conftest.py) ----------------------------------------------------

@pytest.fixture(scope="session")
def e2e_system_guard():
    """Fails the session loudly if the system's sshd/sudo configuration changed or anything
    this run created under /etc (or a throwaway user) is still there at the end."""
    guard = SystemGuard()
    yield guard
    _run_pending_cleanups()
    problems = guard.problems()
    if problems:
        pytest.fail("end-to-end tests left the system changed:\n  " + "\n  ".join(problems),
                    pytrace=False)


@pytest.fixture(scope="session")
def installed_daemon(e2e_system_guard):
    """The installed twofactord on /run/twofactor/twofactord.sock (started by
    `scripts/daemon-service start`). A missing daemon is a failure, not a skip."""
    if DEV_DAEMON:
        dev = helpers.Daemon(None)
        dev.start()
        try:
            os.chmod(dev.dir, 0o755)
            yield InstalledDaemon(dev.socket, module_options=[f"socket={dev.socket}"],
                                  cli_environment={"TWOFACTOR_SOCKET": dev.socket}, config=dev.config_path)
        finally:
            dev.destroy()
        return
    daemon = InstalledDaemon()
    try:
        daemon.check_answers()
        problem = None
    except RuntimeError as error:
        problem = str(error)
    if problem:
        pytest.fail(f"the installed twofactord does not answer ({problem}); install with "
                    "scripts/install and start it with `scripts/daemon-service start` before "
                    "running the end-to-end tests", pytrace=False)
    yield daemon


@pytest.fixture
def e2e_users(installed_daemon):
    """e2e_users(enrolled=True) makes a throwaway user (this run's prefix, real password) and,
    by default, enrolls it (as root over the wire; enrolled="cli": the user runs `twofactor
    enable`), with a fresh uid unless `uid` is given; afterwards the daemon forgets it and the
    user is deleted."""
    made = []

    def make(enrolled=True, uid=None):
        user = RunUser(uid)
        made.append(user)
        if enrolled == "cli":
            user.enrollment = installed_daemon.enroll_with_cli(user.name)
        elif enrolled:
            user.enrollment = installed_daemon.enroll(user.name)
        else:
            user.enrollment = None
        return user

    try:
        yield make
    finally:
        errors = []
        for user in made:  # every user is removed even if forgetting one fails
            try:
                installed_daemon.forget(user.name)
            except Exception as error:
                errors.append(error)
            remove_sudo_traces(user.name)
            user.remove()
        if errors:
            raise errors[0]


@pytest.fixture(scope="module")
def sshd_default(installed_daemon):
    """A throwaway sshd whose PAM stack is pam_unix + pam_twofactor with default options."""
    server = ThrowawaySshd(installed_daemon.module_options).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def sshd_require(installed_daemon):
    """The same with the module's `require` option (no enrollment, no login)."""
    server = ThrowawaySshd([*installed_daemon.module_options, "require"]).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def openssh_client():
    client = OpenSshClient()
    try:
        yield client
    finally:
        client.destroy()


@pytest.fixture
def sudo_grant(installed_daemon):
    """sudo_grant(user, extra_module_options=(), extra_defaults=()) installs a sudoers.d grant
    and its PAM service."""
    made = []

    def make(user, extra_module_options=(), extra_defaults=()):
        grant = SudoGrant(user, [*installed_daemon.module_options, *extra_module_options],
                          extra_defaults)
        made.append(grant)
        return grant

    try:
        yield make
    finally:
        for grant in made:
            grant.remove()
