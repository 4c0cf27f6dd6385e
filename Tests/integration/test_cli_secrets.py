"""`twofactor enable` writes its secrets (the key, the otpauth URI, the QR drawing of it and the
recovery codes) only where the caller asked for them: standard output, or the terminal itself.
Standard error, which provisioning systems and service managers usually log, gets none of them
in any mode.

Run as throwaway non-root users (runuser) against a private daemon, with pipes for all three
streams and no controlling terminal; codes from oathtool.
"""
import json
import os
import re
import select
import subprocess
import time
import urllib.parse

import pytest

import helpers
from helpers import totp

CLI = helpers.TWOFACTOR_CLI
BASE_ENV = helpers.CLI_ENV
GROUPED = re.compile(r"^ {4}((?:[A-Z2-7]{4} )+[A-Z2-7]{1,4})\s*$", re.M)
QR_BLOCKS = ("\u2580", "\u2584", "\u2588")  # what the Unicode QR drawing is made of


class Enable:
    """`twofactor enable ARGS` as `user`, streams on pipes, in a session of its own (so there is
    no terminal to write to)."""

    def __init__(self, user, daemon, *args):
        self.process = subprocess.Popen(
            helpers.cli_command(user.name, "enable", *args, socket=daemon.socket),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=BASE_ENV, cwd="/", start_new_session=True)
        self.stdout = b""

    def read_stdout_until(self, done, timeout=20):
        """Reads standard output until done(text) holds; fails (and kills) after `timeout`."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while not done(self.stdout.decode("utf-8", "replace")):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self.process.kill()
                _, err = self.process.communicate()
                pytest.fail("standard output ended or stalled before the enrollment details; "
                            f"stdout={self.stdout!r} stderr={err!r}")
            self.stdout += chunk
        return self.stdout.decode()

    def finish(self, answer):
        out, err = self.process.communicate(answer.encode(), timeout=60)
        self.stdout += out
        return self.process.returncode, self.stdout.decode(), err.decode("utf-8", "replace")


def assert_no_secret(stderr, secret, uri, recovery_codes=()):
    plain = secret.replace(" ", "")
    grouped = " ".join(plain[i:i + 4] for i in range(0, len(plain), 4))
    for needle in (plain, grouped, uri, urllib.parse.unquote(uri), "otpauth://", *recovery_codes):
        assert needle not in stderr, f"{needle!r} is on standard error: {stderr!r}"
    for block in QR_BLOCKS:
        assert block not in stderr, f"a QR drawing (of the secret) is on standard error: {stderr!r}"


def first_json_line(text):
    return "\n" in text and text.lstrip().startswith("{")


@pytest.mark.parametrize("qr", ["auto", "unicode", "none"])
def test_enable_json_code_stdin_keeps_secrets_off_stderr(daemon, user, qr):
    run = Enable(user, daemon, "--json", "--code-stdin", f"--qr={qr}")
    details = json.loads(run.read_stdout_until(first_json_line).splitlines()[0])
    assert list(details) == ["user", "secret", "uri", "issuer", "algorithm", "digits", "period"]
    code = totp(details["secret"], digits=details["digits"], algorithm=details["algorithm"],
                period=details["period"])
    status, out, err = run.finish(code + "\n")
    assert status == 0, (out, err)
    lines = out.splitlines()
    assert len(lines) == 2, f"expected two JSON lines: {out!r}"
    result = json.loads(lines[1])
    assert result == {**details, "recovery_codes": result["recovery_codes"]}
    assert len(set(result["recovery_codes"])) == 8
    assert_no_secret(err, details["secret"], details["uri"], result["recovery_codes"])


def test_enable_json_with_a_prompt_keeps_secrets_off_stderr(daemon, user):
    """Without --code-stdin a person would type the code at the prompt; with no terminal to draw
    the QR code on, it is not drawn at all (never on standard error)."""
    run = Enable(user, daemon, "--json")
    details = json.loads(run.read_stdout_until(first_json_line).splitlines()[0])
    status, out, err = run.finish(totp(details["secret"]) + "\n")
    assert status == 0, (out, err)
    assert "Code from the app: " in err
    result = json.loads(out.splitlines()[1])
    assert_no_secret(err, details["secret"], details["uri"], result["recovery_codes"])


def test_enable_json_wrong_code_keeps_secrets_off_stderr(daemon, user):
    run = Enable(user, daemon, "--json", "--code-stdin")
    details = json.loads(run.read_stdout_until(first_json_line).splitlines()[0])
    near = {totp(details["secret"], at=time.time() + 30 * step) for step in range(-3, 4)}
    wrong = next(c for c in ("000000", "111111", "123456", "654321") if c not in near)
    status, out, err = run.finish(wrong + "\n")
    assert status == 7 and "Incorrect two-factor authentication code" in err, (out, err)
    assert len(out.splitlines()) == 1, "no result line after a refused code"
    assert_no_secret(err, details["secret"], details["uri"])


@pytest.mark.parametrize("args", [["--code-stdin", "--qr=unicode"], ["--code-stdin", "--qr=none"],
                                  ["--qr=unicode"]], ids=["code-stdin-qr", "code-stdin", "prompt"])
def test_enable_text_modes_keep_secrets_off_stderr(daemon, user, args):
    run = Enable(user, daemon, *args)
    text = run.read_stdout_until(lambda t: re.search(r"^otpauth URI: \S+\n", t, re.M) is not None)
    secret = GROUPED.search(text).group(1).replace(" ", "")
    uri = re.search(r"^otpauth URI: (\S+)$", text, re.M).group(1)
    status, out, err = run.finish(totp(secret) + "\n")
    assert status == 0, (out, err)
    codes = re.findall(r"^\s{4}([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4})\s*$", out, re.M)
    assert len(codes) == 8, out
    assert_no_secret(err, secret, uri, codes)


def test_enable_json_in_a_terminal_draws_the_qr_code_on_the_terminal_only(daemon, user):
    """stdout and stderr are files; the person at the terminal still sees the QR code."""
    import pexpect
    out_path, err_path = os.path.join(user.home, "out"), os.path.join(user.home, "err")
    child = pexpect.spawn(
        "runuser", ["-u", user.name, "--", "bash", "-c", 'exec "$0" "$@" >"$OUT" 2>"$ERR"',
                    CLI, "enable", "--json", "--qr=unicode", "--socket", daemon.socket],
        env={**BASE_ENV, "OUT": out_path, "ERR": err_path}, cwd="/", encoding="utf-8",
        timeout=30, dimensions=(80, 250))
    child.expect("\u2588")  # the drawing reaches the terminal
    deadline = time.monotonic() + 20
    while not first_json_line(open(out_path).read()):
        assert time.monotonic() < deadline, "no details on standard output"
        time.sleep(0.05)
    with open(out_path) as f:
        details = json.loads(f.readline())
    child.sendline(totp(details["secret"]))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    with open(out_path) as f:
        result = json.loads(f.read().splitlines()[1])
    with open(err_path) as f:
        err = f.read()
    assert "Code from the app: " in err
    assert_no_secret(err, details["secret"], details["uri"], result["recovery_codes"])
