"""The `twofactor` command line against the real twofactord binary, run as throwaway non-root
users (runuser) so the daemon's SO_PEERCRED check sees them, driven in a pseudo-terminal by
pexpect where a person would type. Codes come from oathtool (helpers.totp), logins go through
pamtester and the real PAM module, QR codes are decoded by zbarimg.

Paths: TWOFACTORD, TWOFACTOR_CLI, TWOFACTOR_PAM_MODULE (see conftest.py).
"""
import json
import os
import re
import stat
import subprocess
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zlib

import pexpect
import pytest

import helpers
from helpers import (ANSI, ENABLE_PROMPT, PAM_MODULE, enable_with_stdin, fresh_code, pamtester,
                     parse_enable_screen, totp, wrong_code)

CLI = helpers.TWOFACTOR_CLI
INCORRECT = helpers.WRONG_CODE_MESSAGE
CODE_PROMPT = "Current two-factor code (or a recovery code): "
RECOVERY_CODE = re.compile(r"^\s{4}([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4})\s*$", re.M)
BASE_ENV = helpers.CLI_ENV


# --- running the command line ------------------------------------------------------------------

def command_for(user, args, daemon):
    return helpers.cli_command(None if user is None else user.name, *args,
                               socket=None if daemon is None else daemon.socket)


def cli(user, *args, daemon=None, input=None, env=None, timeout=60):
    """Runs `twofactor ARGS --socket DAEMON` as `user` (None = root). Returns CompletedProcess."""
    command = command_for(user, args, daemon)
    return subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout,
                          env={**BASE_ENV, **(env or {})}, cwd="/")


def spawn(user, *args, daemon=None, env=None, columns=250):
    """The command line in a pseudo-terminal, as `user` (None = root)."""
    command = command_for(user, args, daemon)
    return pexpect.spawn(command[0], command[1:], env={**BASE_ENV, **(env or {})}, cwd="/",
                         encoding="utf-8", timeout=30, dimensions=(80, columns))


def finish(child):
    """Waits for the end and returns (everything printed since the last expect, exit status)."""
    child.expect(pexpect.EOF)
    rest = child.before
    child.close()
    return rest, child.exitstatus


def status_of(daemon, name):
    response = daemon.request("status", {"user": name})
    assert response.status == "ok", response
    return response


def login_service(pam_service, daemon):
    """PAM_SUCCESS -> authenticated; PAM_IGNORE (not enrolled) falls through to pam_permit, so an
    account without 2FA logs in without being asked; any failure ends the stack."""
    return pam_service([
        f"auth [success=done ignore=ignore default=die] {PAM_MODULE} socket={daemon.socket}",
        "auth required pam_permit.so",
        "account required pam_permit.so",
    ])


def logs_in(service, user, answers):
    result = pamtester(service, user.name, answers)
    assert result.returncode in (0, 1), result
    return result.returncode == 0


# --- QR codes, decoded by zbarimg ------------------------------------------------------------------

def zbar_decode(path):
    result = subprocess.run(["zbarimg", "--raw", "-q", path], capture_output=True, text=True)
    assert result.returncode == 0, f"zbarimg found no code in {path}: {result.stderr}"
    return result.stdout.rstrip("\n")


def decode_matrix(rows, tmp_path, name="qr.pgm", scale=6):
    """Writes modules (True = dark) as a greyscale PGM and decodes it with zbarimg."""
    height, width = len(rows), len(rows[0])
    assert all(len(r) == width for r in rows), "ragged QR drawing"
    pixels = bytearray()
    for row in rows:
        line = b"".join((b"\x00" if dark else b"\xff") * scale for dark in row)
        pixels += line * scale
    path = tmp_path / name
    path.write_bytes(b"P5\n%d %d\n255\n" % (width * scale, height * scale) + bytes(pixels))
    return zbar_decode(str(path))


def terminal_qr_rows(screen, style):
    """The module matrix drawn between the "Scan this QR code" line and the key, ink = dark."""
    text = ANSI.sub("", screen).replace("\r", "")
    start = text.index("Scan this QR code with your authenticator app:")
    end = text.index("Or enter this key by hand")
    lines = [line for line in text[start:end].split("\n")[1:] if line != ""]
    assert len(lines) > 10, lines
    rows = []
    if style == "unicode":
        assert set("".join(lines)) <= set(" ▀▄█"), set("".join(lines))
        for line in lines:
            rows.append([c in "▀█" for c in line])
            rows.append([c in "▄█" for c in line])
    else:
        assert set("".join(lines)) <= set(" #"), set("".join(lines))
        for line in lines:
            assert len(line) % 2 == 0
            rows.append([line[i:i + 2] == "##" for i in range(0, len(line), 2)])
    # The quiet zone: four light modules on every side.
    for row in rows[:4] + rows[-4:]:
        assert not any(row)
    for row in rows:
        assert not any(row[:4]) and not any(row[-4:])
    return rows


# --- enable -----------------------------------------------------------------------------------------

def test_enable_in_a_terminal_then_log_in(daemon, user, pam_service, tmp_path):
    child = spawn(user, "enable", daemon=daemon)
    child.expect_exact(ENABLE_PROMPT)
    screen = child.before
    secret, uri = parse_enable_screen(screen)
    assert uri.startswith("otpauth://totp/")
    assert "\x1b[30;107m" in screen, "a colour terminal gets black on white"
    # The drawing on the screen is a QR code of exactly that URI.
    assert decode_matrix(terminal_qr_rows(screen, "unicode"), tmp_path) == uri
    assert status_of(daemon, user.name)["pending"] is True

    # A wrong code: the message, and the same enrollment is still waiting for a code.
    child.sendline(wrong_code(secret))
    child.expect_exact(INCORRECT)
    child.expect_exact("Try again (4 tries left)")
    child.expect_exact(ENABLE_PROMPT)

    used = totp(secret)
    child.sendline(used)
    child.expect_exact("will not be shown again")
    output = ANSI.sub("", child.before)
    rest, status = finish(child)
    assert status == 0, output + rest
    codes = RECOVERY_CODE.findall(output)
    assert len(codes) == 8 and len(set(codes)) == 8, output
    assert "Save them in a safe place" in output

    state = status_of(daemon, user.name)
    assert state["isEnrolled"] is True and state["recoveryCodesLeft"] == 8

    service = login_service(pam_service, daemon)
    assert not logs_in(service, user, []), "an enrolled account must be asked for a code"
    assert not logs_in(service, user, [used]), "the code used to enable is a replay"
    assert logs_in(service, user, [fresh_code(secret, 1)])
    assert logs_in(service, user, [codes[0]]), "a recovery code logs in"
    assert not logs_in(service, user, [codes[0]]), "a recovery code works once"
    assert status_of(daemon, user.name)["recoveryCodesLeft"] == 7


def test_enable_ascii_drawing_decodes(daemon, user, tmp_path):
    child = spawn(user, "enable", "--qr=ascii", daemon=daemon, env={"NO_COLOR": "1"})
    child.expect_exact(ENABLE_PROMPT)
    screen = child.before
    assert "\x1b[" not in screen, "NO_COLOR turns colours off"
    _, uri = parse_enable_screen(screen)
    assert decode_matrix(terminal_qr_rows(screen, "ascii"), tmp_path) == uri
    child.sendeof()
    rest, status = finish(child)
    assert status == 1, rest
    assert "cancelled" in rest
    state = status_of(daemon, user.name)
    assert state["pending"] is False and state["isEnrolled"] is False, "EOF cancels the enrollment"


def test_enable_warns_when_the_terminal_is_too_narrow(daemon, user):
    child = spawn(user, "enable", "--qr=ascii", daemon=daemon, columns=60)
    child.expect_exact(ENABLE_PROMPT)
    text = re.sub(r"\s+", " ", ANSI.sub("", child.before))
    assert "The terminal is 60 columns wide and the QR code needs" in text
    assert "--qr-image FILE" in text
    child.sendeof()
    finish(child)
    wide = spawn(user, "enable", "--qr=ascii", daemon=daemon)
    wide.expect_exact(ENABLE_PROMPT)
    assert "columns wide" not in wide.before
    wide.sendeof()
    finish(wide)


@pytest.mark.parametrize("lang, style", [("C", "ascii"), ("C.UTF-8", "unicode")])
def test_enable_chooses_the_drawing_from_the_locale(daemon, user, tmp_path, lang, style):
    child = spawn(user, "enable", daemon=daemon, env={"LANG": lang, "LC_ALL": lang})
    child.expect_exact(ENABLE_PROMPT)
    screen = child.before
    _, uri = parse_enable_screen(screen)
    assert decode_matrix(terminal_qr_rows(screen, style), tmp_path) == uri
    child.sendintr()
    _, status = finish(child)
    assert status == 130


def test_enable_ctrl_c_cancels_the_pending_enrollment(daemon, user):
    child = spawn(user, "enable", "--qr=none", daemon=daemon)
    child.expect_exact(ENABLE_PROMPT)
    assert "Scan this QR" not in child.before, "--qr=none draws nothing"
    parse_enable_screen(child.before)
    assert status_of(daemon, user.name)["pending"] is True
    child.sendintr()
    rest, status = finish(child)
    assert status == 130, rest
    assert "Enrollment cancelled" in rest
    assert status_of(daemon, user.name)["pending"] is False
    assert "enroll-cancel" in daemon.log()


def test_enable_five_wrong_codes_give_up(daemon, user):
    child = spawn(user, "enable", "--qr=none", daemon=daemon)
    child.expect_exact(ENABLE_PROMPT)
    secret, _ = parse_enable_screen(child.before)
    for left in (4, 3, 2, 1):
        child.sendline(wrong_code(secret))
        child.expect_exact(f"Try again ({left} tr")
        child.expect_exact(ENABLE_PROMPT)
    child.sendline(wrong_code(secret))
    rest, status = finish(child)
    assert status == 7, rest
    assert INCORRECT in rest and "enrollment cancelled" in rest
    state = status_of(daemon, user.name)
    assert state["isEnrolled"] is False and state["pending"] is False


def test_enable_when_already_enrolled_exits_5(daemon, user):
    daemon.enroll(user.name)
    result = cli(user, "enable", "--qr=none", daemon=daemon, input="")
    assert result.returncode == 5, result
    assert "already enabled" in result.stderr and "twofactor disable" in result.stderr


def test_enable_twice_replaces_the_pending_enrollment(daemon, user):
    first = spawn(user, "enable", "--qr=none", daemon=daemon)
    first.expect_exact(ENABLE_PROMPT)
    old_secret, _ = parse_enable_screen(first.before)
    # A second run while the first still waits: what the daemon answers is handled.
    code, pending, out, err = enable_with_stdin(user.name, socket=daemon.socket)
    assert code == 0, err
    assert pending["secret"] != old_secret
    assert len(json.loads(out)["recovery_codes"]) == 8
    # The first run's code no longer confirms anything.
    first.sendline(totp(old_secret))
    rest, status = finish(first)
    assert status != 0, rest


def test_enable_json_code_stdin_for_provisioning(daemon, user, pam_service):
    code, pending, out, err = enable_with_stdin(user.name, socket=daemon.socket)
    assert code == 0, err
    assert list(pending) == ["user", "secret", "uri", "issuer", "algorithm", "digits", "period"]
    result = json.loads(out)
    assert list(result) == list(pending) + ["recovery_codes"]
    assert result["user"] == user.name and result["secret"] == pending["secret"]
    assert result["issuer"] == "twofactor-test"
    assert (result["algorithm"], result["digits"], result["period"]) == ("SHA1", 6, 30)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(result["uri"]).query)
    assert query["secret"] == [result["secret"]]
    assert len(set(result["recovery_codes"])) == 8
    service = login_service(pam_service, daemon)
    assert logs_in(service, user, [fresh_code(result["secret"], 1)])
    assert logs_in(service, user, [result["recovery_codes"][3]])


def test_enable_shows_non_default_parameters(daemon_factory, user):
    daemon = daemon_factory(algorithm="SHA256", digits=8, period=60)
    child = spawn(user, "enable", "--qr=none", daemon=daemon)
    child.expect_exact(ENABLE_PROMPT)
    assert "SHA256, 8 digits, every 60 seconds" in child.before
    secret, _ = parse_enable_screen(child.before)
    child.sendline(totp(secret, digits=8, algorithm="SHA256", period=60))
    rest, status = finish(child)
    assert status == 0, rest
    assert len(RECOVERY_CODE.findall(rest)) == 8


def test_enable_wrong_code_on_stdin_exits_7(daemon, user):
    image = os.path.join(user.home, "cancelled.png")
    result = cli(user, "enable", "--qr=none", "--code-stdin", "--qr-image", image, daemon=daemon,
                 input="000000\n")
    # 000000 could be the real code once in a million; the pending secret is fresh each time.
    assert result.returncode == 7, result
    assert INCORRECT in result.stderr
    assert status_of(daemon, user.name)["pending"] is False
    assert not os.path.exists(image), "the image of a cancelled enrollment is removed"


# --- QR images ---------------------------------------------------------------------------------------

def test_qr_image_png_decodes_to_the_uri(daemon, user):
    image = os.path.join(user.home, "qr.png")
    code, pending, out, err = enable_with_stdin(user.name, "--qr-image", image, socket=daemon.socket)
    assert code == 0, err
    assert zbar_decode(image) == pending["uri"]
    info = os.stat(image)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == user.uid
    with open(image, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # Every chunk's CRC, and the zlib stream's Adler-32 (zlib.decompress checks it).
    chunks, index = {}, 8
    while index < len(data):
        length = int.from_bytes(data[index:index + 4], "big")
        kind, body = data[index + 4:index + 8], data[index + 8:index + 8 + length]
        crc = int.from_bytes(data[index + 8 + length:index + 12 + length], "big")
        assert zlib.crc32(kind + body) == crc, kind
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        index += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    ihdr = chunks[b"IHDR"]
    width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    assert width == height and width % 8 == 0 and ihdr[8:10] == b"\x01\x00"  # 1-bit greyscale
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + (width + 7) // 8)
    # The quiet zone: the first 4 modules (32 px) of rows are white (bits set).
    first_row = raw[1:1 + (width + 7) // 8]
    assert first_row == b"\xff" * len(first_row)


def test_qr_image_never_follows_a_symlink(daemon, user):
    target = os.path.join(user.home, "target.txt")
    link = os.path.join(user.home, "link.png")
    subprocess.run(["runuser", "-u", user.name, "--", "sh", "-c",
                    f"echo precious > {target} && ln -s {target} {link}"], check=True)
    refused = cli(user, "enable", "--code-stdin", "--qr-image", link, daemon=daemon, input="")
    assert refused.returncode == 1 and "already exists" in refused.stderr, refused
    code, pending, _, err = enable_with_stdin(user.name, "--qr-image", link, "--force", socket=daemon.socket)
    assert code == 0, err
    assert not os.path.islink(link) and zbar_decode(link) == pending["uri"]
    assert open(target).read() == "precious\n"


def test_qr_image_is_not_overwritten_without_force(daemon, user):
    image = os.path.join(user.home, "keep.png")
    subprocess.run(["runuser", "-u", user.name, "--", "sh", "-c", f"echo precious > {image}"], check=True)
    result = cli(user, "enable", "--qr=none", "--code-stdin", "--qr-image", image, daemon=daemon, input="")
    assert result.returncode == 1 and "--force" in result.stderr, result
    assert open(image).read() == "precious\n"
    assert status_of(daemon, user.name)["pending"] is False, "nothing starts when the file is refused"

    os.chmod(image, 0o644)
    code, pending, _, err = enable_with_stdin(user.name, "--qr-image", image, "--force", socket=daemon.socket)
    assert code == 0, err
    assert zbar_decode(image) == pending["uri"]
    assert stat.S_IMODE(os.stat(image).st_mode) == 0o600


def svg_rows(root, side):
    """Rasterises the SVG's single path ("M x y h n v1 h-n z" runs) into modules."""
    paths = root.findall("{http://www.w3.org/2000/svg}path")
    assert len(paths) == 1
    rows = [[False] * side for _ in range(side)]
    for x, y, n in re.findall(r"M(\d+) (\d+)h(\d+)v1h-\3z", paths[0].get("d")):
        for dx in range(int(n)):
            rows[int(y)][int(x) + dx] = True
    return rows


@pytest.mark.parametrize("name, extra", [("qr.svg", []), ("qr.image", ["--qr-format", "svg"])])
def test_qr_image_svg(daemon, user, tmp_path, name, extra):
    image = os.path.join(user.home, name)
    code, pending, _, err = enable_with_stdin(user.name, "--qr-image", image, *extra, socket=daemon.socket)
    assert code == 0, err
    assert stat.S_IMODE(os.stat(image).st_mode) == 0o600
    root = ET.parse(image).getroot()  # well-formed XML or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("shape-rendering") == "crispEdges"
    zero, zero2, side, side2 = map(int, root.get("viewBox").split())
    assert (zero, zero2) == (0, 0) and side == side2
    # Version n has 17 + 4n modules; plus a quiet zone of 4 on each side.
    assert (side - 8 - 17) % 4 == 0 and side > 8 + 21
    assert int(root.get("width")) == int(root.get("height")) == side * 8
    rows = svg_rows(root, side)
    assert decode_matrix(rows, tmp_path, "svg.pgm") == pending["uri"]


def test_qr_image_bad_path_fails_before_enrolling(daemon, user):
    result = cli(user, "enable", "--qr-image", "/nonexistent/dir/qr.png", "--code-stdin",
                 daemon=daemon, input="")
    assert result.returncode == 1 and "cannot create" in result.stderr, result
    assert status_of(daemon, user.name)["pending"] is False


# --- recovery codes, disable, status ---------------------------------------------------------------

def test_recovery_codes_regenerate_in_a_terminal(daemon, user, pam_service):
    enrollment = daemon.enroll(user.name)
    old = enrollment.recovery_codes
    child = spawn(user, "recovery-codes", daemon=daemon)
    child.expect_exact(CODE_PROMPT)
    child.sendline(wrong_code(enrollment.secret))
    child.expect_exact(INCORRECT)
    child.expect_exact("Try again")
    child.expect_exact(CODE_PROMPT)
    child.sendline(old[0])
    child.expect_exact("will not be shown again")
    output = ANSI.sub("", child.before)
    rest, status = finish(child)
    assert status == 0, output + rest
    assert old[0] not in output, "typing is not echoed"
    new = RECOVERY_CODE.findall(output)
    assert len(set(new)) == 8 and not set(new) & set(old)
    service = login_service(pam_service, daemon)
    assert not logs_in(service, user, [old[1]]), "the old set stops working"
    assert logs_in(service, user, [new[0]])
    assert status_of(daemon, user.name)["recoveryCodesLeft"] == 7


def test_recovery_codes_alias_json_and_code_stdin(daemon, user):
    enrollment = daemon.enroll(user.name)
    code = fresh_code(enrollment.secret, 1)
    result = cli(user, "regenerate-recovery-codes", "--json", "--code-stdin", daemon=daemon,
                 input=code + "\n")
    assert result.returncode == 0, result
    out = json.loads(result.stdout)
    assert list(out) == ["user", "recovery_codes"] and out["user"] == user.name
    assert len(set(out["recovery_codes"])) == 8
    # The same TOTP code again is a replay.
    again = cli(user, "recovery-codes", "--code-stdin", daemon=daemon, input=code + "\n")
    assert again.returncode == 7 and "already used" in again.stderr, again


def test_wrong_and_malformed_codes(daemon, user):
    enrollment = daemon.enroll(user.name)
    wrong = cli(user, "recovery-codes", "--code-stdin", daemon=daemon,
                input=wrong_code(enrollment.secret) + "\n")
    assert wrong.returncode == 7 and INCORRECT in wrong.stderr, wrong
    assert status_of(daemon, user.name)["failures"] == 1
    # Input that cannot be a code is refused before it reaches the daemon: no failure counted.
    for junk in ("12", "hello world", "1234567890123"):
        result = cli(user, "disable", "--code-stdin", daemon=daemon, input=junk + "\n")
        assert result.returncode == 7 and INCORRECT in result.stderr, result
        assert "wrong length" in result.stderr or "neither a numeric code" in result.stderr, result
    assert status_of(daemon, user.name)["failures"] == 1
    empty = cli(user, "disable", "--code-stdin", daemon=daemon, input="")
    assert empty.returncode == 1 and "no code" in empty.stderr, empty
    assert status_of(daemon, user.name)["isEnrolled"] is True


def test_not_enrolled_exits_4(daemon, user):
    for command in (["disable", "--code-stdin"], ["recovery-codes", "--code-stdin"]):
        result = cli(user, *command, daemon=daemon, input="123456\n")
        assert result.returncode == 4, result
        assert "not enabled" in result.stderr


def test_disable_in_a_terminal(daemon, user, pam_service):
    enrollment = daemon.enroll(user.name)
    service = login_service(pam_service, daemon)
    assert not logs_in(service, user, []), "enrolled: the login asks for a code"

    child = spawn(user, "disable", daemon=daemon)
    child.expect_exact("[y/N] ")
    child.sendline("n")
    rest, status = finish(child)
    assert status == 1 and "stays on" in rest
    assert status_of(daemon, user.name)["isEnrolled"] is True

    child = spawn(user, "disable", daemon=daemon)
    child.expect_exact("[y/N] ")
    child.sendline("y")
    child.expect_exact(CODE_PROMPT)
    child.sendline(enrollment.recovery_codes[5])
    rest, status = finish(child)
    assert status == 0, rest
    assert "now disabled" in rest and enrollment.recovery_codes[5] not in rest
    assert status_of(daemon, user.name)["isEnrolled"] is False
    assert logs_in(service, user, []), "not enrolled: the module ignores the login, no code asked"


def test_disable_json_with_totp(daemon, user):
    enrollment = daemon.enroll(user.name)
    result = cli(user, "disable", "--json", "--code-stdin", daemon=daemon,
                 input=fresh_code(enrollment.secret, 1) + "\n")
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {"user": user.name, "enrolled": False}


def test_a_user_with_a_long_passwd_entry_is_still_the_caller(daemon, user):
    """A passwd entry larger than the first lookup buffer (16 KB): getpwuid_r answers ERANGE, and
    the lookup must retry with a larger buffer rather than call the user unknown."""
    subprocess.run(["usermod", "--comment", "x" * 20_000, user.name], check=True, capture_output=True)
    # Not runuser: it refuses such an entry itself. Python switches to the user's uid without a lookup.
    result = subprocess.run([CLI, "status", "--json", "--socket", daemon.socket], capture_output=True, text=True,
                            timeout=60, env=BASE_ENV, cwd="/", user=user.uid, group=user.gid, extra_groups=[])
    assert result.returncode == 0, result
    status = json.loads(result.stdout)
    assert (status["user"], status["enrolled"]) == (user.name, False), status


def test_status_text_and_json(daemon, user, pam_service):
    before = cli(user, "status", daemon=daemon)
    assert before.returncode == 0, before
    assert f"Two-factor authentication for {user.name}: not enabled" in before.stdout
    as_json = json.loads(cli(user, "status", "--json", daemon=daemon).stdout)
    assert as_json["user"] == user.name and as_json["enrolled"] is False

    start = int(time.time())
    enrollment = daemon.enroll(user.name)
    service = login_service(pam_service, daemon)
    assert logs_in(service, user, [enrollment.recovery_codes[0]])
    assert not logs_in(service, user, [wrong_code(enrollment.secret)])

    text = cli(user, "status", daemon=daemon)
    assert text.returncode == 0, text
    assert f"Two-factor authentication for {user.name}: enabled" in text.stdout
    assert re.search(r"Recovery codes left:\s+7$", text.stdout, re.M), text.stdout
    assert re.search(r"Locked out:\s+no", text.stdout)
    assert re.search(r"Failed attempts:\s+1 in a row", text.stdout)
    assert re.search(r"Last used:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text.stdout)

    out = json.loads(cli(user, "status", "--json", daemon=daemon).stdout)
    assert list(out) == ["user", "enrolled", "pending", "enrolled_since", "last_used",
                         "recovery_codes_left", "failures", "locked", "locked_until", "drift_steps", "type"]
    assert out["enrolled"] is True and out["pending"] is False
    assert out["recovery_codes_left"] == 7 and out["failures"] == 1
    assert out["locked"] is False and out["locked_until"] is None
    since = time.mktime(time.strptime(out["enrolled_since"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert start - 5 <= since <= time.time() + 5
    assert out["last_used"] is not None


# --- admin -------------------------------------------------------------------------------------------

def lock_out(daemon, enrollment, failures=5):
    for _ in range(failures):
        response = daemon.request("verify", {"user": enrollment.user, "code": wrong_code(enrollment.secret)})
        assert response.status in ("wrongCode", "lockedOut"), response
    response = daemon.request("verify", {"user": enrollment.user, "code": wrong_code(enrollment.secret)})
    assert response.status == "lockedOut", response


def test_admin_as_root(daemon, make_user, pam_service):
    alice, bob = make_user(), make_user()
    a = daemon.enroll(alice.name)
    daemon.enroll(bob.name)

    listed = cli(None, "admin", "list", daemon=daemon)
    assert listed.returncode == 0, listed
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["USER", "ENROLLED", "SINCE", "LAST", "USED", "CODES", "LEFT", "LOCKED"]
    names = [row.split()[0] for row in rows]
    assert alice.name in names and bob.name in names
    as_json = json.loads(cli(None, "admin", "list", "--json", daemon=daemon).stdout)
    by_user = {acct["user"]: acct for acct in as_json["accounts"]}
    assert by_user[alice.name]["enrolled"] is True and by_user[alice.name]["recovery_codes_left"] == 8

    # Five wrong codes lock alice out; status shows it, her own commands say until when.
    lock_out(daemon, a)
    shown = cli(None, "admin", "status", alice.name, daemon=daemon)
    assert shown.returncode == 0 and re.search(r"Locked out:\s+yes, until", shown.stdout), shown
    st = json.loads(cli(None, "admin", "status", alice.name, "--json", daemon=daemon).stdout)
    assert st["locked"] is True and st["locked_until"] and st["failures"] >= 5
    assert "until" in [r for r in cli(None, "admin", "list", daemon=daemon).stdout.splitlines()
                       if r.startswith(alice.name)][0]
    mine = cli(alice, "recovery-codes", "--code-stdin", daemon=daemon, input=a.recovery_codes[0] + "\n")
    assert mine.returncode == 8 and "locked out" in mine.stderr and "until" in mine.stderr, mine
    service = login_service(pam_service, daemon)
    assert not logs_in(service, alice, [a.recovery_codes[0]])

    unlocked = cli(None, "admin", "unlock", alice.name, "--json", daemon=daemon)
    assert unlocked.returncode == 0, unlocked
    assert json.loads(unlocked.stdout) == {"user": alice.name, "unlocked": True}
    st = json.loads(cli(None, "admin", "status", alice.name, "--json", daemon=daemon).stdout)
    assert st["locked"] is False and st["failures"] == 0
    assert logs_in(service, alice, [a.recovery_codes[0]])

    # Reset: needs --yes without a terminal; then alice is not enrolled any more.
    refused = cli(None, "admin", "reset", alice.name, daemon=daemon, input="y\n")
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused
    reset = cli(None, "admin", "reset", alice.name, "--yes", "--json", daemon=daemon)
    assert reset.returncode == 0 and json.loads(reset.stdout) == {"user": alice.name, "reset": True}, reset
    assert status_of(daemon, alice.name)["isEnrolled"] is False
    assert logs_in(service, alice, [])
    again = cli(None, "admin", "reset", alice.name, "--yes", daemon=daemon)
    assert again.returncode == 4 and "not enabled" in again.stderr, again
    missing = cli(None, "admin", "unlock", alice.name, daemon=daemon)
    assert missing.returncode == 4, missing


def test_admin_reset_asks_in_a_terminal(daemon, user):
    daemon.enroll(user.name)
    child = spawn(None, "admin", "reset", user.name, daemon=daemon)
    child.expect_exact("[y/N] ")
    child.sendline("")
    _, status = finish(child)
    assert status == 1 and status_of(daemon, user.name)["isEnrolled"] is True
    child = spawn(None, "admin", "reset", user.name, daemon=daemon)
    child.expect_exact("[y/N] ")
    child.sendline("yes")
    rest, status = finish(child)
    assert status == 0, rest
    assert status_of(daemon, user.name)["isEnrolled"] is False


def test_admin_clock(daemon):
    text = cli(None, "admin", "clock", daemon=daemon)
    assert text.returncode == 0, text
    state = re.search(r"^Clock check: (ok|warning|bad|unknown)$", text.stdout, re.M)
    assert state, text.stdout
    out = json.loads(cli(None, "admin", "clock", "--json", daemon=daemon).stdout)
    assert list(out) == ["state", "offset_micros", "server", "stratum", "delay_micros", "measured_at",
                         "age_seconds", "kernel_synchronized", "kernel_error_micros", "compensation",
                         "correction_micros", "falsetickers", "remedy", "message"]
    assert out["correction_micros"] is None and out["falsetickers"] == []
    assert out["state"] == state.group(1)
    raw = daemon.request("clockStatus")
    assert raw.status == "ok"
    assert out["kernel_synchronized"] == raw.get("kernelSynchronized")
    assert out["offset_micros"] == raw.get("clockOffsetMicros")
    if raw.get("clockRemedy"):
        assert "Remedy: " in text.stdout


def test_admin_clock_shows_a_measurement(daemon_factory):
    """With a (fake, 127.0.0.1) NTP server 37.5 s ahead, every measured field is shown."""
    from fake_ntp_server import FakeNTPServer
    server = FakeNTPServer(skew=37.5)
    try:
        daemon = daemon_factory(ntp_servers=server.address, ntp_interval=1, ntp_timeout=0.5, ntp_samples=2)
        deadline = time.time() + 15
        while "clockOffsetMicros" not in daemon.request("clockStatus") and time.time() < deadline:
            time.sleep(0.1)
        text = cli(None, "admin", "clock", daemon=daemon)
        assert text.returncode == 0, text
        assert re.search(r"^Clock check: bad$", text.stdout, re.M), text.stdout
        assert re.search(r"Offset:\s+-37\.[45]\d\d s \(this clock minus true time\)", text.stdout), text.stdout
        assert re.search(rf"Time server:\s+{re.escape(server.address)} \(stratum 2\)", text.stdout)
        assert re.search(r"Round-trip delay:\s+\d+\.\d{3} ms", text.stdout)
        assert re.search(r"Measured:\s+\d{4}-\d\d-\d\d .*\(\d+ seconds ago\)", text.stdout)
        assert "Remedy: " in text.stdout and "chronyc makestep" in text.stdout
        out = json.loads(cli(None, "admin", "clock", "--json", daemon=daemon).stdout)
        assert out["state"] == "bad" and abs(out["offset_micros"] / 1e6 + 37.5) < 0.1
        assert out["server"] == server.address and out["stratum"] == 2
        assert 0 <= out["delay_micros"] < 100_000 and 0 <= out["age_seconds"] < 30
        assert out["compensation"] is True and "chronyc makestep" in out["remedy"]
    finally:
        server.close()


def test_non_admin_is_refused_with_6(daemon, make_user):
    alice, bob = make_user(), make_user()
    daemon.enroll(bob.name)
    for command in (["admin", "list"], ["admin", "status", bob.name], ["admin", "reset", bob.name, "--yes"],
                    ["admin", "unlock", bob.name], ["admin", "clock"]):
        result = cli(alice, *command, daemon=daemon)
        assert result.returncode == 6, (command, result)
        assert "permission denied" in result.stderr
    assert status_of(daemon, bob.name)["isEnrolled"] is True


def test_admin_group_member_may_administer(daemon_factory, make_user):
    group = helpers.ThrowawayGroup()
    try:
        admin = make_user(groups=[group.name])
        other = make_user()
        daemon = daemon_factory(admin_group=group.name)
        daemon.enroll(other.name)
        listed = cli(admin, "admin", "list", "--json", daemon=daemon)
        assert listed.returncode == 0, listed
        assert other.name in [a["user"] for a in json.loads(listed.stdout)["accounts"]]
        assert cli(admin, "admin", "reset", other.name, "--yes", daemon=daemon).returncode == 0
        assert cli(other, "admin", "list", daemon=daemon).returncode == 6
    finally:
        group.remove()


def test_admin_group_member_gives_a_code_for_their_own_enrollment(daemon_factory, make_user):
    """Admin powers are for other people's accounts: on their own, an admin proves possession."""
    group = helpers.ThrowawayGroup()
    try:
        admin = make_user(groups=[group.name])
        daemon = daemon_factory(admin_group=group.name)
        enrollment = daemon.enroll(admin.name)
        for args in (["admin", "reset", admin.name, "--yes"], ["admin", "unlock", admin.name]):
            refused = cli(admin, *args, daemon=daemon)
            assert refused.returncode == 6, refused
            assert "own account" in refused.stderr, refused.stderr
        wrong = cli(admin, "disable", "--code-stdin", daemon=daemon, input=wrong_code(enrollment.secret) + "\n")
        assert wrong.returncode == 7, wrong
        assert status_of(daemon, admin.name)["isEnrolled"] is True
        done = cli(admin, "disable", "--code-stdin", daemon=daemon, input=enrollment.code(1) + "\n")
        assert done.returncode == 0, done
        assert status_of(daemon, admin.name)["isEnrolled"] is False
    finally:
        group.remove()


# --- daemon not running, socket selection, help ---------------------------------------------------

def test_daemon_not_running_exits_3_with_the_hint(daemon, user):
    daemon.stop()
    for command in (["status"], ["enable", "--code-stdin"], ["admin", "list"]):
        result = cli(user, *command, daemon=daemon, input="")
        assert result.returncode == 3, (command, result)
        assert "not running" in result.stderr and "systemctl start twofactord" in result.stderr
        assert "twofactord" in result.stderr


def test_socket_from_environment_and_before_the_subcommand(daemon, user):
    via_env = cli(user, "status", "--json", env={"TWOFACTOR_SOCKET": daemon.socket})
    assert via_env.returncode == 0 and json.loads(via_env.stdout)["user"] == user.name, via_env
    before = cli(user, "--socket", daemon.socket, "--json", "status")
    assert before.returncode == 0 and json.loads(before.stdout)["enrolled"] is False, before
    nowhere = cli(user, "status", env={"TWOFACTOR_SOCKET": "/nonexistent/tf.sock"})
    assert nowhere.returncode == 3 and "/nonexistent/tf.sock" in nowhere.stderr


SUBCOMMANDS = [[], ["enable"], ["recovery-codes"], ["regenerate-recovery-codes"], ["disable"], ["status"],
               ["admin"], ["admin", "list"], ["admin", "status"], ["admin", "reset"], ["admin", "unlock"],
               ["admin", "clock"], ["admin", "health"]]


@pytest.mark.parametrize("path", SUBCOMMANDS, ids=lambda p: " ".join(p) or "twofactor")
def test_help_of_every_subcommand(path):
    result = cli(None, *path, "--help")
    assert result.returncode == 0, result
    text = result.stdout
    assert "OVERVIEW:" in text and "EXIT STATUS" in text and "EXAMPLE" in text
    for code in range(0, 9):
        assert re.search(rf"^\s+{code}\s+\S", text, re.M), f"exit status {code} missing"
    assert "systemctl start twofactord" in text


def test_usage_errors_exit_2():
    for args in ([], ["admin"], ["--bogus"], ["enable", "--qr=sideways"], ["admin", "status"], ["frobnicate"],
                 ["enable", "--qr-scale", "0"], ["status", "extra"]):
        result = cli(None, *args)
        assert result.returncode == 2, (args, result)
        assert result.stderr.strip(), args


def test_man_page_documents_every_subcommand_and_status():
    page = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "twofactor.1")
    rendered = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                              env={**BASE_ENV, "MANWIDTH": "200"})
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    for word in ("enable", "recovery-codes", "regenerate-recovery-codes", "disable", "status",
                 "admin list", "admin status", "admin reset", "admin unlock", "admin clock", "admin doctor",
                 "admin health",
                 "--socket", "--json", "--code-stdin", "--qr-image", "--qr-format", "--force",
                 "TWOFACTOR_SOCKET", "EXIT STATUS", "FILES", "EXAMPLES"):
        assert word in text, word
