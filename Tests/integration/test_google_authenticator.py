"""Moving from pam_google_authenticator to twofactor: `twofactor admin import-google-authenticator`
on files written by the real `google-authenticator` command (libpam-google-authenticator), run as
throwaway users with different options, then real logins through pamtester with pam_twofactor.
Codes come from oathtool. Also HOTP tokens: `twofactor admin enroll --hotp --secret-stdin`,
`twofactor enable --hotp`, look-ahead, RFC 4226 7.4 resynchronisation and replay."""
import hashlib
import shutil
import json
import os
import subprocess
import tempfile
import time

import pytest

import twofactor_wire as wire
from helpers import CLI_ENV, PAM_MODULE, cli_command, pamtester

GA_MODULE = "/lib/x86_64-linux-gnu/security/pam_google_authenticator.so"
GA_FILE = ".google_authenticator"

# libpam-google-authenticator is in scripts/packages.txt: without it these tests fail, not skip.


# --- helpers ------------------------------------------------------------------------------------

def make_ga_file(user, *options):
    """Runs the real google-authenticator as `user`, non-interactively; returns the file's path."""
    subprocess.run(["runuser", "-u", user.name, "--", "google-authenticator", "-f", "-C", "-Q", "NONE", *options],
                   check=True, capture_output=True, env={**CLI_ENV, "HOME": user.home}, cwd="/")
    path = os.path.join(user.home, GA_FILE)
    assert os.stat(path).st_uid == user.uid
    return path


def read_ga(path):
    """(secret, options dict of lists, scratch codes) of a google_authenticator file."""
    lines = open(path).read().splitlines()
    options = {}
    for line in lines[1:]:
        if line.startswith('" '):
            key, *values = line[2:].split()
            options[key] = values
    return lines[0], options, [line for line in lines[1:] if line.isdigit() and len(line) == 8]


def totp_at_step(secret, step, period=30):
    return subprocess.run(["oathtool", "--totp", "-b", "-s", f"{period}s", "-N", f"@{step * period}", secret],
                          check=True, capture_output=True, text=True).stdout.strip()


def hotp(secret, counter):
    return subprocess.run(["oathtool", "--hotp", "-b", "-c", str(counter), secret],
                          check=True, capture_output=True, text=True).stdout.strip()


def twofactor(*args, socket, stdin=None):
    return subprocess.run(cli_command(None, *args, socket=socket), input=stdin, capture_output=True, text=True,
                          env=CLI_ENV, timeout=60)


def import_ga(daemon, *args):
    """`twofactor admin import-google-authenticator --json ARGS` as root: (exit status, JSON)."""
    run = twofactor("admin", "import-google-authenticator", "--json", *args, socket=daemon.socket)
    assert run.stdout, run.stderr
    return run.returncode, json.loads(run.stdout)


def by_user(result):
    return {account["user"]: account for account in result["accounts"]}


def login(service, user, code):
    return pamtester(service, user.name, [code]).returncode == 0


@pytest.fixture
def our_service(pam_service, daemon):
    return pam_service([f"auth required {PAM_MODULE} socket={daemon.socket} require",
                        "account required pam_permit.so"], prefix="tfga")


@pytest.fixture
def ga_service(pam_service):
    return pam_service([f"auth required {GA_MODULE}", "account required pam_permit.so"], prefix="tfgaold")


def checksum(*paths):
    digest = hashlib.sha256()
    for path in paths:
        for root, _dirs, files in sorted(os.walk(path)) if os.path.isdir(path) else [(None, None, [path])]:
            for name in sorted(files):
                if name.endswith("-shm"):  # the WAL index: readers mark it, it holds no data
                    continue
                full = name if root is None else os.path.join(root, name)
                digest.update(full.encode() + b"\0" + open(full, "rb").read())
    return digest.hexdigest()


# --- import -------------------------------------------------------------------------------------

def test_totp_import_refuses_codes_ga_used_and_keeps_scratch_codes(daemon, make_user, our_service, ga_service):
    user = make_user(prefix="tfga")
    path = make_ga_file(user, "-t", "-d", "-w", "3", "-r", "3", "-R", "30", "-e", "5")
    secret, _, scratch = read_ga(path)
    # A login through pam_google_authenticator records its step as used (DISALLOW_REUSE).
    step = int(time.time()) // 30
    used = totp_at_step(secret, step)
    assert login(ga_service, user, used)
    _, options, _ = read_ga(path)
    assert options["DISALLOW_REUSE"] == [str(step)], options

    status, result = import_ga(daemon, user.name)
    assert status == 0, result
    account = by_user(result)[user.name]
    assert account["result"] == "imported" and account["type"] == "totp"
    assert account["last_used_step"] == step and account["window"] == 1 and account["step_size"] == 30
    assert account["recovery_codes"] == 5 == len(scratch)
    assert any(item.startswith("RATE_LIMIT 3 30") for item in account["not_carried"]), account
    assert os.path.exists(path), "the original stays without --move-aside"

    assert not login(our_service, user, used), "a code pam_google_authenticator saw used was accepted again"
    assert login(our_service, user, totp_at_step(secret, step + 1))
    assert login(our_service, user, scratch[0])
    assert not login(our_service, user, scratch[0]), "a scratch code worked twice"
    state = daemon.request("status", {"user": user.name})
    assert state["recoveryCodesLeft"] == 4 and state["otpKind"] == "totp"


def test_hotp_import_keeps_the_counter(daemon, make_user, our_service, ga_service):
    user = make_user(prefix="tfga")
    path = make_ga_file(user, "-c", "-w", "5", "-u")
    secret, options, _ = read_ga(path)
    assert options["HOTP_COUNTER"] == ["1"]
    assert login(ga_service, user, hotp(secret, 1))  # pam_google_authenticator moves on to 2
    assert read_ga(path)[1]["HOTP_COUNTER"] == ["2"]

    status, result = import_ga(daemon, user.name)
    assert status == 0, result
    account = by_user(result)[user.name]
    assert (account["type"], account["counter"], account["window"]) == ("hotp", 2, 4), account

    assert not login(our_service, user, hotp(secret, 1)), "a counter pam_google_authenticator used was accepted"
    assert login(our_service, user, hotp(secret, 4)), "look-ahead (window 5: counters 2 to 6)"
    assert not login(our_service, user, hotp(secret, 3)), "a skipped counter behind the last one was accepted"
    assert not login(our_service, user, hotp(secret, 4)), "replay"
    assert login(our_service, user, hotp(secret, 5))
    assert daemon.request("status", {"user": user.name})["otpKind"] == "hotp"


def test_step_size_60_and_minimal_window(daemon, make_user, our_service):
    user = make_user(prefix="tfga")
    path = make_ga_file(user, "-t", "-D", "-u", "-S", "60", "-W")
    secret, options, _ = read_ga(path)
    assert options["STEP_SIZE"] == ["60"] and options["WINDOW_SIZE"] == ["3"]  # -W: its smallest window
    status, result = import_ga(daemon, user.name)
    account = by_user(result)[user.name]
    assert status == 0 and account["step_size"] == 60 and account["window"] == 1, account
    assert any("DISALLOW_REUSE" in item for item in account["not_carried"]), account
    step = int(time.time()) // 60
    assert login(our_service, user, totp_at_step(secret, step, period=60))
    assert not login(our_service, user, totp_at_step(secret, step, period=60)), "twofactor always refuses reuse"


def test_dry_run_changes_nothing(daemon, make_user):
    users = [make_user(prefix="tfga") for _ in range(2)]
    paths = [make_ga_file(users[0], "-t", "-d", "-w", "3", "-u"), make_ga_file(users[1], "-c", "-w", "3", "-u")]
    before = checksum(daemon.state_dir, *paths), [os.stat(p).st_mode for p in paths]
    status, result = import_ga(daemon, "--dry-run", *(u.name for u in users))
    assert status == 0 and result["dry_run"] is True and result["would_import"] == 2, result
    assert {a["result"] for a in result["accounts"]} == {"would-import"}
    assert (checksum(daemon.state_dir, *paths), [os.stat(p).st_mode for p in paths]) == before
    for u in users:
        assert daemon.request("check", {"user": u.name}).status == "notEnrolled"
    # --all finds them too (and every other account with such a file; a dry run changes nothing).
    run = twofactor("admin", "import-google-authenticator", "--all", "--dry-run", "--json", socket=daemon.socket)
    found = by_user(json.loads(run.stdout))
    assert all(found[u.name]["result"] == "would-import" for u in users), found
    assert checksum(daemon.state_dir, *paths) == before[0]


def test_broken_files_are_reported_and_the_rest_import(daemon, make_user, tmp_path):
    good, readable, truncated, foreign, outside, stolen, missing = (make_user(prefix="tfga") for _ in range(7))
    make_ga_file(good, "-t", "-d", "-w", "3", "-u")
    os.chmod(make_ga_file(readable, "-t", "-d", "-w", "3", "-u"), 0o640)
    path = make_ga_file(truncated, "-t", "-d", "-w", "3", "-u")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) - 3])  # cut inside the last scratch code
    path = os.path.join(foreign.home, GA_FILE)
    with open(path, "w") as f:
        f.write("[core]\n\trepositoryformatversion = 0\n")
    os.chown(path, foreign.uid, foreign.gid)
    os.chmod(path, 0o600)
    # A symlink to a file of the user's own, but outside the home directory.
    make_ga_file(outside, "-t", "-d", "-w", "3", "-u")
    target = os.path.join(os.path.dirname(outside.home), f"{outside.name}-ga")
    os.rename(os.path.join(outside.home, GA_FILE), target)
    try:
        os.symlink(target, os.path.join(outside.home, GA_FILE))
        os.chown(os.path.join(outside.home, GA_FILE), outside.uid, outside.gid, follow_symlinks=False)
        os.chown(make_ga_file(stolen, "-t", "-d", "-w", "3", "-u"), 0, 0)

        names = [u.name for u in (good, readable, truncated, foreign, outside, stolen, missing)]
        status, result = import_ga(daemon, *names)
    finally:
        os.unlink(target)
    assert status == 1, result
    accounts = by_user(result)
    assert accounts[good.name]["result"] == "imported"
    assert result["imported"] == 1 and result["failed"] == 6, result
    expected = {readable.name: "readable or writable by group or others", truncated.name: "truncated",
                foreign.name: "not a google-authenticator secret file",
                outside.name: "pointing out of the home directory", stolen.name: "owned by another user",
                missing.name: "no file"}
    for name, words in expected.items():
        assert accounts[name]["result"] == "failed" and words in accounts[name]["message"], accounts[name]
        assert daemon.request("check", {"user": name}).status == "notEnrolled"
    assert daemon.request("check", {"user": good.name}).status == "enrolled"


def test_enrolled_users_are_skipped_unless_replace_and_move_aside(daemon, make_user, our_service):
    user = make_user(prefix="tfga")
    daemon.enroll(user.name)
    path = make_ga_file(user, "-t", "-d", "-w", "3", "-u", "-e", "3")
    secret, _, _ = read_ga(path)
    status, result = import_ga(daemon, user.name)
    assert status == 0 and by_user(result)[user.name]["result"] == "skipped", result
    assert "already" in by_user(result)[user.name]["message"]

    status, result = import_ga(daemon, "--replace", "--move-aside", user.name)
    account = by_user(result)[user.name]
    assert status == 0 and account["result"] == "imported", result
    assert account["moved_to"] == path + ".imported-by-twofactor"
    assert not os.path.exists(path) and os.stat(account["moved_to"]).st_mode & 0o777 == 0o600
    assert daemon.request("status", {"user": user.name})["recoveryCodesLeft"] == 3
    assert login(our_service, user, totp_at_step(secret, int(time.time()) // 30))


def test_import_is_for_root_only(daemon, make_user):
    user = make_user(prefix="tfga")
    make_ga_file(user, "-t", "-d", "-w", "3", "-u")
    run = subprocess.run(cli_command(user.name, "admin", "import-google-authenticator", user.name,
                                     socket=daemon.socket), capture_output=True, text=True, env=CLI_ENV, cwd="/")
    assert run.returncode == 6, run
    # And the daemon refuses a key chosen by anyone but root, whatever the command line does.
    answer = daemon.request("adminEnroll", {"user": user.name, "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEH"},
                            as_uid=user.uid, as_gid=user.gid)
    assert answer.status == "permissionDenied"


# --- HOTP tokens --------------------------------------------------------------------------------

TOKEN = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def verify(daemon, user, code):
    return daemon.request("verify", {"user": user.name, "code": code})


def test_hardware_token_look_ahead_resync_and_replay(daemon, make_user, our_service):
    user = make_user(prefix="tfhotp")
    run = twofactor("admin", "enroll", user.name, "--hotp", "--secret-stdin", "--json", socket=daemon.socket,
                    stdin=TOKEN + "\n")
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["recovery_codes"]) == 8

    assert login(our_service, user, hotp(TOKEN, 0))
    assert not login(our_service, user, hotp(TOKEN, 0)), "an HOTP code worked twice"
    answer = verify(daemon, user, hotp(TOKEN, 0))
    assert answer.status == "codeReused"
    accepted = verify(daemon, user, hotp(TOKEN, 7))  # look-ahead: 1 + 10 (hotp_look_ahead)
    assert accepted.status == "accepted" and wire.METHOD[accepted["method"]] == "hotp"
    assert verify(daemon, user, hotp(TOKEN, 5)).status == "codeReused"

    # RFC 4226 7.4: beyond the look-ahead, two consecutive codes resynchronise.
    first = verify(daemon, user, hotp(TOKEN, 60))
    assert first.status == "wrongCode" and "resynchronise" in first["message"], first
    assert login(our_service, user, hotp(TOKEN, 61))
    assert not login(our_service, user, hotp(TOKEN, 59))
    assert login(our_service, user, hotp(TOKEN, 62))
    # Not consecutive: no resynchronisation.
    assert verify(daemon, user, hotp(TOKEN, 90)).status == "wrongCode"
    assert verify(daemon, user, hotp(TOKEN, 92)).status == "wrongCode"
    # Beyond the resynchronisation window (100): refused outright.
    assert verify(daemon, user, hotp(TOKEN, 300)).status == "wrongCode"
    assert verify(daemon, user, hotp(TOKEN, 301)).status == "wrongCode"
    assert verify(daemon, user, hotp(TOKEN, 63)).status == "accepted"


def test_hotp_wrong_codes_lock_the_account(daemon_factory, make_user):
    daemon = daemon_factory(max_failures=3)
    user = make_user(prefix="tfhotp")
    run = twofactor("admin", "enroll", user.name, "--hotp", "--secret-stdin", "--counter", "5", socket=daemon.socket,
                    stdin=TOKEN + "\n")
    assert run.returncode == 0, run.stderr
    wrong = next(c for c in ("918273", "582914", "736405")
                 if c not in {hotp(TOKEN, n) for n in range(0, 120)})
    for _ in range(3):
        assert verify(daemon, user, wrong).status == "wrongCode"
    assert verify(daemon, user, hotp(TOKEN, 5)).status == "lockedOut"


def test_admin_enroll_refuses_an_enrolled_user_unless_replace(daemon, make_user):
    user = make_user(prefix="tfhotp")
    daemon.enroll(user.name)
    run = twofactor("admin", "enroll", user.name, "--totp", "--secret-stdin", socket=daemon.socket, stdin=TOKEN + "\n")
    assert run.returncode == 5, run
    run = twofactor("admin", "enroll", user.name, "--totp", "--secret-stdin", "--replace", socket=daemon.socket,
                    stdin=TOKEN + "\n")
    assert run.returncode == 0, run.stderr
    step = int(time.time()) // 30
    assert verify(daemon, user, totp_at_step(TOKEN, step)).status == "accepted"


def test_enable_hotp_from_the_command_line(daemon, make_user):
    user = make_user(prefix="tfhotp")
    process = subprocess.Popen(cli_command(user.name, "enable", "--hotp", "--json", "--code-stdin", "--qr=none",
                                           socket=daemon.socket),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=CLI_ENV, cwd="/")
    try:
        pending = json.loads(process.stdout.readline())
        assert pending["type"] == "hotp" and pending["counter"] == 0 and pending["uri"].startswith("otpauth://hotp/")
        out, err = process.communicate(hotp(pending["secret"], 0) + "\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert len(json.loads(out)["recovery_codes"]) == 8
    assert verify(daemon, user, hotp(pending["secret"], 0)).status == "codeReused", "the confirming code logged in"
    assert verify(daemon, user, hotp(pending["secret"], 1)).status == "accepted"


def test_readme_stack_with_both_modules_during_the_move(daemon, make_user, pam_service):
    """README step 3: pam_twofactor first with success=1, pam_google_authenticator nullok after it.
    An imported user answers one prompt (twofactor's); a user not imported yet answers the old
    module's; a wrong code for an imported user is refused without falling through."""
    imported, waiting = make_user(prefix="tfga"), make_user(prefix="tfga")
    secrets_ = {}
    for u in (imported, waiting):
        secrets_[u.name] = read_ga(make_ga_file(u, "-t", "-d", "-w", "3", "-u"))[0]
    status, result = import_ga(daemon, imported.name)
    assert status == 0, result
    # pam_permit stands for common-auth's password check, which a jump needs before it (a jump
    # does not make a stack succeed by itself).
    service = pam_service(["auth required pam_permit.so",
                           f"auth [success=1 ignore=ignore default=die] {PAM_MODULE} socket={daemon.socket}",
                           f"auth required {GA_MODULE} nullok",
                           "account required pam_permit.so"], prefix="tfgaboth")
    step = int(time.time()) // 30
    assert login(service, imported, totp_at_step(secrets_[imported.name], step))
    assert not login(service, imported, totp_at_step(secrets_[imported.name], step + 5))
    assert login(service, waiting, totp_at_step(secrets_[waiting.name], step))


def test_symlink_inside_the_home_imports_and_the_link_is_moved_aside(daemon, make_user):
    user = make_user(prefix="tfga")
    path = make_ga_file(user, "-t", "-d", "-w", "3", "-u")
    kept = os.path.join(user.home, ".config-ga")
    os.rename(path, kept)
    os.symlink(kept, path)
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    status, result = import_ga(daemon, "--move-aside", user.name)
    account = by_user(result)[user.name]
    assert status == 0 and account["result"] == "imported", result
    moved = path + ".imported-by-twofactor"
    assert account["moved_to"] == moved and os.path.islink(moved) and not os.path.lexists(path)
    assert os.stat(kept).st_mode & 0o777 == 0o600


def test_path_template_with_user_and_home(daemon, make_user, tmp_path):
    """--path like the module's secret=: ${USER} in a directory of the administrator's, and
    ${HOME}; several users in one run."""
    central = tempfile.mkdtemp(prefix="tfga-", dir="/tmp")
    try:
        os.chmod(central, 0o755)
        first, second = make_user(prefix="tfga"), make_user(prefix="tfga")
        for u in (first, second):
            shutil.move(make_ga_file(u, "-t", "-d", "-w", "3", "-u"), os.path.join(central, u.name))
        status, result = import_ga(daemon, "--path", central + "/${USER}", first.name, second.name)
        assert status == 0 and result["imported"] == 2, result
        assert by_user(result)[first.name]["path"] == os.path.join(central, first.name)
    finally:
        shutil.rmtree(central, ignore_errors=True)
    third = make_user(prefix="tfga")
    os.rename(make_ga_file(third, "-c", "-w", "3", "-u"), os.path.join(third.home, ".ga-" + third.name))
    status, result = import_ga(daemon, "--path", "${HOME}/.ga-${USER}", third.name)
    assert status == 0 and by_user(result)[third.name]["type"] == "hotp", result
