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

The throwaway sshd and the SSH clients are the test kit's (ssh_kit.py, shared with the demo);
users, codes, enrollment and the safety net are helpers.py's. The fixtures are defined at the
end of this file and exposed through conftest.py.
"""
import glob
import hashlib
import io
import os
import re
import secrets
import subprocess
import time

import pytest

import helpers
import ssh_kit
import twofactor_wire as wire
from helpers import CODE_PROMPT, unlink_quietly

DEFAULT_SOCKET = "/run/twofactor/twofactord.sock"
PROTECTED_FILES = ("/etc/pam.d/sshd", "/etc/pam.d/sudo", "/etc/sudoers")
# Everything this run creates (users, PAM services, sudoers files) is named with this prefix, so
# sshd's AllowUsers can name exactly this run's users and leftovers are easy to find.
RUN_PREFIX = "tfe" + secrets.token_hex(2)
# Development only: TWOFACTOR_E2E_DEV_DAEMON=1 runs a private daemon (helpers.Daemon, the
# TWOFACTORD binary) instead of requiring the installed one. The test runner never sets it.
DEV_DAEMON = os.environ.get("TWOFACTOR_E2E_DEV_DAEMON") == "1"


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
        return helpers.enroll(self.request, user)

    def enroll_with_cli(self, user):
        """`twofactor enable --json --code-stdin` run as the user itself (no root involved): the
        key comes as the first JSON line on standard output, the code goes to standard input."""
        return helpers.enable_with_stdin(user, "--qr=none", env=self.cli_environment,
                                         timeout=30).enrollment()

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

class RunUser(helpers.ThrowawayUser):
    """helpers.ThrowawayUser with this run's prefix and a chosen (by default fresh) uid."""

    def __init__(self, uid=None):
        super().__init__(prefix=RUN_PREFIX, uid=helpers.unused_uid() if uid is None else uid)
        self.enrollment = None


def remove_sudo_traces(user):
    """sudo's per-user time stamp and lecture files, which outlive `userdel`."""
    for path in (f"/run/sudo/ts/{user}", f"/var/lib/sudo/lectured/{user}"):
        unlink_quietly(path)


# --- the throwaway sshd: the kit's, with this run's names ---------------------------------------

class ThrowawaySshd(ssh_kit.ThrowawaySshd):
    """ssh_kit.ThrowawaySshd named with this run's prefix, letting in only this run's users,
    its PAM stack the password and then the module with `module_options`."""

    def __init__(self, module_options=()):
        super().__init__(ssh_kit.pam_lines(module_options), allow_users=f"{RUN_PREFIX}*",
                         prefix=RUN_PREFIX, comment="the twofactor end-to-end tests")


# --- sudo --------------------------------------------------------------------------------------

class SudoGrant:
    """/etc/sudoers.d/<unique>: USER may run anything, authenticated by its own PAM service."""

    def __init__(self, user, module_options=(), extra_defaults=(), lines=None):
        self.user = user
        self.extra_defaults = list(extra_defaults)
        self.name = _new_name()  # no dot: sudo's includedir skips names with one
        self.path = f"/etc/sudoers.d/{self.name}"
        self.pam = None
        helpers.register_cleanup(("sudoers", self.name), self.remove)
        try:
            # `lines`: a whole PAM stack of the caller's instead of the password-then-code one.
            self.pam = helpers.PamService(self.name, lines or ssh_kit.pam_lines(module_options))
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
            unlink_quietly(staging)
        whole = subprocess.run(["visudo", "-c"], capture_output=True, text=True)
        assert whole.returncode == 0, f"visudo -c fails with the grant in place:\n{whole.stdout}{whole.stderr}"

    def remove(self):
        unlink_quietly(self.path)
        unlink_quietly(f"/etc/sudoers.d/.{self.name}")
        if self.pam is not None:
            self.pam.remove()
        helpers.done_cleanup(("sudoers", self.name))


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
    helpers.run_pending_cleanups()
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
    with ThrowawaySshd(installed_daemon.module_options) as server:
        yield server


@pytest.fixture(scope="module")
def sshd_require(installed_daemon):
    """The same with the module's `require` option (no enrollment, no login)."""
    with ThrowawaySshd([*installed_daemon.module_options, "require"]) as server:
        yield server


@pytest.fixture(scope="module")
def openssh_client():
    client = ssh_kit.OpenSshClient(prefix=RUN_PREFIX)
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
