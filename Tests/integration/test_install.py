"""The install path: scripts/install is idempotent and scripts/uninstall removes what it installed.

Runs after scripts/test-all has built and installed the product, so `--no-build` reuses that
release build. The staged runs (DESTDIR) show the file list; the run against the real system
shows that installing again changes nothing an administrator owns and keeps the daemon working.
"""
import hashlib
import os
import stat
import subprocess

import pytest

import twofactor_wire as wire

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
INSTALL = os.path.join(ROOT, "scripts", "install")
UNINSTALL = os.path.join(ROOT, "scripts", "uninstall")
CONFIG = "/etc/twofactor/twofactord.conf"
SOCKET = "/run/twofactor/twofactord.sock"

EXPECTED = [
    "usr/local/sbin/twofactord",
    "usr/local/bin/twofactor",
    "usr/lib/x86_64-linux-gnu/security/pam_twofactor.so",
    "etc/systemd/system/twofactord.service",
    "etc/systemd/system/twofactord.socket",
    "etc/twofactor/twofactord.conf",
    "usr/local/share/man/man1/twofactor.1",
    "usr/local/share/man/man8/twofactord.8",
    "usr/local/share/man/man8/pam_twofactor.8",
    "usr/local/share/doc/twofactor/examples/config/twofactord.conf",
    "usr/local/share/twofactor/installed-files",
]


def release_build_exists():
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.returncode == 0 and os.path.exists(os.path.join(out.stdout.strip(), "twofactord"))


def tree(root):
    """Every file under root with its mode and content hash."""
    result = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            result[os.path.relpath(path, root)] = (stat.S_IMODE(os.stat(path).st_mode), digest)
    return result


@pytest.fixture(scope="module")
def built():
    assert release_build_exists(), "no release build: run scripts/install (scripts/test-all does)"


def run(args, **env):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_staged_install_is_complete_idempotent_and_uninstalls_cleanly(built, tmp_path):
    stage = str(tmp_path / "stage")
    first = run([INSTALL, "--no-build"], DESTDIR=stage)
    assert first.returncode == 0, first.stderr
    installed = tree(stage)
    for path in EXPECTED:
        assert path in installed, f"{path} not installed; got {sorted(installed)}"
    assert installed["usr/local/sbin/twofactord"][0] == 0o755
    assert installed["usr/lib/x86_64-linux-gnu/security/pam_twofactor.so"][0] == 0o644

    second = run([INSTALL, "--no-build"], DESTDIR=stage)
    assert second.returncode == 0, second.stderr
    assert "kept the existing /etc/twofactor/twofactord.conf" in second.stdout
    assert tree(stage) == installed, "a second install changed the installed files"

    removed = run([UNINSTALL], DESTDIR=stage)
    assert removed.returncode == 0, removed.stderr
    left = tree(stage)
    # Only the administrator's configuration stays; --purge would remove it.
    assert sorted(left) == ["etc/twofactor/twofactord.conf"], sorted(left)

    purged = run([UNINSTALL, "--purge"], DESTDIR=stage)
    assert purged.returncode == 0, purged.stderr
    assert tree(stage) == {}


def test_a_new_config_gets_the_ntp_servers_asked_for(built, tmp_path):
    stage = str(tmp_path / "stage")
    result = run([INSTALL, "--no-build", "--ntp-servers", "127.0.0.1:12345"], DESTDIR=stage)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(stage, "etc/twofactor/twofactord.conf")) as f:
        lines = [line.strip() for line in f if line.strip().startswith("ntp_servers")]
    assert lines == ["ntp_servers = 127.0.0.1:12345"], lines


def test_installing_again_on_the_system_keeps_config_key_and_service(built):
    def answers():
        return wire.request(SOCKET, "check", {"user": "root"}).status in ("enrolled", "notEnrolled")

    assert answers(), "the installed daemon is not running (scripts/daemon-service start)"
    with open(CONFIG, "rb") as f:
        config_before = f.read()
    key = "/etc/twofactor/secret.key"
    key_before = os.stat(key)

    result = run([INSTALL, "--no-build"])
    assert result.returncode == 0, result.stdout + result.stderr
    with open(CONFIG, "rb") as f:
        assert f.read() == config_before
    key_after = os.stat(key)
    assert (key_after.st_ino, key_after.st_mtime_ns) == (key_before.st_ino, key_before.st_mtime_ns)
    assert stat.S_IMODE(key_after.st_mode) == 0o600
    confdir = os.stat("/etc/twofactor")
    assert stat.S_IMODE(confdir.st_mode) == 0o1770, oct(confdir.st_mode)
    assert stat.S_IMODE(os.stat("/var/lib/twofactor").st_mode) == 0o700
    assert answers()


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd manages the daemon here")
def test_restart_after_an_upgrade_replaces_the_running_daemon(built):
    """After an upgrade the running binary shows as "(deleted)"; restart must still stop it
    rather than start a second daemon beside it."""
    pidfile = "/run/twofactord.pid"  # root's; /run/twofactor belongs to the daemon's user
    with open(pidfile) as f:
        old = int(f.read())
    assert run([INSTALL, "--no-build"]).returncode == 0
    assert os.readlink(f"/proc/{old}/exe").endswith("(deleted)")
    restarted = run([os.path.join(ROOT, "scripts", "daemon-service"), "restart"])
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    with open(pidfile) as f:
        new = int(f.read())
    assert new != old
    assert not os.path.exists(f"/proc/{old}"), "the old daemon is still running"
    daemons = subprocess.run(["pgrep", "-f", "^/usr/local/sbin/twofactord --config /etc/twofactor/twofactord.conf"],
                             capture_output=True, text=True).stdout.split()
    assert daemons == [str(new)], daemons
    assert wire.request(SOCKET, "check", {"user": "root"}).status in ("enrolled", "notEnrolled")
