"""Building blocks for the integration tests (see conftest.py for the fixtures that use them)."""
import base64
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import twofactor_wire as wire

TWOFACTORD = os.environ.get("TWOFACTORD", "/usr/local/sbin/twofactord")
TWOFACTOR_CLI = os.environ.get("TWOFACTOR_CLI", "/usr/local/bin/twofactor")
PAM_MODULE = os.environ.get("TWOFACTOR_PAM_MODULE",
                            "/usr/lib/x86_64-linux-gnu/security/pam_twofactor.so")


def unique_name(prefix="tf"):
    """Lowercase (libpam lowercases service names), short enough for a user name."""
    return f"{prefix}{os.getpid() % 100000}{secrets.token_hex(3)}"


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
    return totp(secret_b32, at=time.time() + 30 * steps_ahead, **kwargs)


def b32(secret_bytes):
    return base64.b32encode(secret_bytes).decode().rstrip("=")


# --- the daemon ---------------------------------------------------------------------------------

class Enrollment:
    def __init__(self, user, secret, uri, recovery_codes):
        self.user = user
        self.secret = secret            # base32 text, as shown to the person
        self.uri = uri
        self.recovery_codes = recovery_codes

    def code(self, steps_ahead=0):
        return fresh_code(self.secret, steps_ahead)


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
            wrapped = [pid for pid in self._group_members() if pid != self.process.pid]
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
        deadline = time.time() + 10
        while self._group_members() and time.time() < deadline:
            time.sleep(0.02)
        code = self.process.returncode
        self.process = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return code

    def _group_members(self):
        """Pids of the processes of the daemon's group still running (zombies do not count)."""
        members = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    state, _ppid, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == self.process.pid and state != "Z":
                members.append(int(entry))
        return members

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
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def request(self, op, fields=(), **kwargs):
        return wire.request(self.socket, op, fields, **kwargs)

    def enroll(self, user):
        """Enrolls `user` through the daemon (as root) and confirms with an oathtool code."""
        begun = self.request("enrollBegin", {"user": user})
        assert begun.status == "ok", begun
        secret = begun["secret"]
        confirmed = self.request("enrollConfirm", {"user": user, "code": totp(secret)})
        assert confirmed.status == "ok", confirmed
        assert len(confirmed["recoveryCode"]) == 8, confirmed
        return Enrollment(user, secret, begun["uri"], confirmed["recoveryCode"])


# --- throwaway system objects -------------------------------------------------------------------

class ThrowawayUser:
    """A real Unix account with a random password and home directory; remove() deletes both."""

    def __init__(self, prefix="tfu", groups=(), name=None):
        self.name = name or unique_name(prefix)
        self.password = "pw-" + secrets.token_urlsafe(12)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", self.name],
                       check=True, capture_output=True)
        try:
            subprocess.run(["chpasswd"], input=f"{self.name}:{self.password}\n", text=True,
                           check=True, capture_output=True)
            for group in groups:
                subprocess.run(["usermod", "-aG", group, self.name], check=True, capture_output=True)
        except Exception:
            self.remove()
            raise
        import pwd
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, entry.pw_dir

    def remove(self):
        subprocess.run(["userdel", "--force", "--remove", self.name], capture_output=True)


class ThrowawayGroup:
    def __init__(self, prefix="tfg"):
        self.name = unique_name(prefix)
        subprocess.run(["groupadd", self.name], check=True, capture_output=True)
        import grp
        self.gid = grp.getgrnam(self.name).gr_gid

    def remove(self):
        subprocess.run(["groupdel", self.name], capture_output=True)


class PamService:
    """/etc/pam.d/<name>; the name must be lowercase because libpam lowercases it."""

    def __init__(self, name, lines):
        assert name == name.lower()
        self.name = name
        self.path = os.path.join("/etc/pam.d", name)
        assert not os.path.exists(self.path), self.path
        with open(self.path, "w") as f:
            f.write("# throwaway PAM service of the twofactor integration tests\n")
            f.write("\n".join(lines) + "\n")

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def pamtester(service, user, answers, operation="authenticate", timeout=30, env=None, wrapper=()):
    """Runs pamtester (under `wrapper`, a command prefix, if given); `answers` are the
    conversation replies, one per line on stdin. Returns the CompletedProcess (pamtester exits 0
    on success)."""
    text = "".join(a + "\n" for a in answers)
    return subprocess.run([*wrapper, "pamtester", "-v", service, user, operation], input=text.encode(),
                          capture_output=True, timeout=timeout, env=env)
