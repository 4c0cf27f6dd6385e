"""scripts/daemon-service without systemd: it runs as root and starts the daemon as the daemon's
user, who owns the run directory. Nothing that user plants there (a symlink, a FIFO) may make
root write through it or hang.

Never touches the installed product: the script's TWOFACTOR_SERVICE_* variables point it at the
daemon under test (TWOFACTORD), a private config, run directory, pid file and log, a throwaway
user as the daemon's user, and direct start (no systemctl) even where systemd runs.
"""
import os
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from helpers import TWOFACTORD
import twofactor_wire as wire

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "daemon-service")
PRECIOUS = "root's file, not to be overwritten\n"


class Service:
    """A private layout for the script: base/ (root, 0755) holds the config, the log, the pid
    directory (root, 0755), a root-owned victim file, and run/ and state/ owned by the user."""

    def __init__(self, user):
        self.user = user
        self.base = tempfile.mkdtemp(prefix="tfsvc-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.rundir = os.path.join(self.base, "run")
        self.state = os.path.join(self.base, "state")
        self.piddir = os.path.join(self.base, "pid")
        self.pidfile = os.path.join(self.piddir, "twofactord.pid")
        self.legacy_pidfile = os.path.join(self.rundir, "twofactord.pid")
        self.socket = os.path.join(self.rundir, "twofactord.sock")
        self.log = os.path.join(self.base, "twofactord.log")
        self.config = os.path.join(self.base, "twofactord.conf")
        self.victim = os.path.join(self.base, "victim")
        os.mkdir(self.piddir, 0o755)
        for directory, mode in ((self.rundir, 0o755), (self.state, 0o700)):
            os.mkdir(directory, mode)
            os.chown(directory, user.uid, user.gid)
        with open(self.config, "w") as f:
            f.write(f"socket = {self.socket}\nstate_directory = {self.state}\n"
                    f"key_file = {self.state}/secret.key\nlog = stderr\nntp_servers =\n")
        with open(self.victim, "w") as f:
            f.write(PRECIOUS)
        self.env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "TWOFACTOR_SERVICE_DIRECT": "1",
            "TWOFACTOR_SERVICE_DAEMON": os.path.realpath(TWOFACTORD),  # as /proc/PID/exe shows it
            "TWOFACTOR_SERVICE_CONFIG": self.config,
            "TWOFACTOR_SERVICE_RUNDIR": self.rundir,
            "TWOFACTOR_SERVICE_PIDFILE": self.pidfile,
            "TWOFACTOR_SERVICE_USER": user.name,
            "TWOFACTOR_SERVICE_LOG": self.log,
        }

    def run(self, action, timeout=30):
        # Its own process group, so a script that hangs is ended with all its children.
        process = subprocess.Popen([SCRIPT, action], env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                   start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def as_user(self, *command):
        subprocess.run(["runuser", "-u", self.user.name, "--", *command], check=True,
                       capture_output=True)

    def victim_text(self):
        with open(self.victim) as f:
            return f.read()

    def daemons(self):
        """Pids of the daemon under test running as our throwaway user (ours alone)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                exe = os.readlink(f"/proc/{entry}/exe")
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if uid == self.user.uid and exe.removesuffix(" (deleted)") == os.path.realpath(TWOFACTORD):
                found.append(int(entry))
        return found

    def answers(self):
        try:
            return wire.request(self.socket, "check", {"user": "root"}).status in ("enrolled", "notEnrolled")
        except OSError:
            return False

    def destroy(self):
        try:
            self.run("stop")
        except subprocess.TimeoutExpired:
            pass
        for pid in self.daemons():  # whatever the script failed to stop, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def service(make_user):
    s = Service(make_user(prefix="tfsvc"))
    try:
        yield s
    finally:
        s.destroy()


def test_start_status_stop(service):
    started = service.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert service.answers()
    [pid] = service.daemons()
    assert f"pid {pid}" in started.stdout, started.stdout
    status = service.run("status")
    assert status.returncode == 0 and f"running (pid {pid})" in status.stdout, status
    again = service.run("start")
    assert again.returncode == 0 and "already running" in again.stdout, again
    assert service.daemons() == [pid]
    stopped = service.run("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped
    assert service.daemons() == []
    assert service.run("status").returncode == 3


def test_a_symlink_planted_in_the_run_directory_is_not_written_through(service):
    # The daemon's user owns the run directory and links the old pid file's name to root's file.
    service.as_user("ln", "-s", service.victim, service.legacy_pidfile)
    started = service.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert service.victim_text() == PRECIOUS, "root wrote the pid through the planted link"
    assert service.answers()
    stopped = service.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert service.daemons() == [], "stop did not find the daemon it started"
    assert service.victim_text() == PRECIOUS


def test_a_symlink_at_the_pid_file_is_replaced_not_followed(service):
    os.symlink(service.victim, service.pidfile)
    started = service.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert service.victim_text() == PRECIOUS
    info = os.lstat(service.pidfile)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == 0
    with open(service.pidfile) as f:
        assert [int(f.read())] == service.daemons()


def test_a_fifo_planted_in_the_run_directory_does_not_hang_the_script(service):
    service.as_user("mkfifo", service.legacy_pidfile)
    for action in ("status", "stop"):
        result = service.run(action, timeout=20)
        assert result.returncode in (0, 3), result
    started = service.run("start", timeout=30)
    assert started.returncode == 0, started.stdout + started.stderr
    assert service.run("status", timeout=20).returncode == 0


def test_a_daemon_started_by_the_old_script_is_still_stopped(service):
    """Before, the pid file was root's file in the run directory; an upgrade's restart must still
    find that daemon rather than start a second one beside it."""
    started = service.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    [pid] = service.daemons()
    os.replace(service.pidfile, service.legacy_pidfile)  # where the old script left it, root's
    stopped = service.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert service.daemons() == [], f"daemon {pid} still runs"
    assert not os.path.lexists(service.legacy_pidfile)


def test_a_pid_directory_others_can_write_is_refused(service):
    os.chmod(service.piddir, 0o777)
    started = service.run("start")
    assert started.returncode == 1 and "writable only by root" in started.stderr, started
    assert service.daemons() == [], "the daemon was started anyway"
