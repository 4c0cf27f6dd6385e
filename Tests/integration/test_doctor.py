"""`twofactor admin doctor` against configuration trees (Tests/fixtures/doctor/<tree>/etc/...):
Debian 12's stock files, the shipped examples as the README installs them, and broken variants.
Each tree's verdict and exit status are asserted, and each broken variant is shown to be an actual
bypass or lockout: its stack is installed as a throwaway PAM service (pam_twofactor.so pointed at
the module under test and a private daemon, the way test_examples.py does it) and driven with
pamtester, or its sshd settings are run in a throwaway sshd and logged into.

Tests/fixtures/doctor/README.md says what each tree is.
"""
import json
import os
import re
import shutil
import subprocess
import warnings

import pytest

import helpers
from helpers import CODE_PROMPT, PAM_MODULE, TWOFACTOR_CLI, pamtester
from ssh_kit import ThrowawaySshd, paramiko_login

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "Tests", "fixtures", "doctor")
SUCCESS = "successfully authenticated"

# tree -> (exit status, the checks of its holes and warnings)
EXPECTED = {
    "debian12": (2, {"pam.missing", "sshd.publickey-only"}),
    "shipped-password-code": (0, set()),
    "shipped-key-and-code": (0, set()),
    "shipped-one-prompt": (0, set()),
    "substack-sufficient": (0, set()),
    "sufficient-unix": (2, {"pam.skips-code"}),
    "jump-over": (2, {"pam.skips-code"}),
    "optional-module": (2, {"pam.skips-code"}),
    "include-sufficient": (2, {"pam.skips-code"}),
    "ignore-then-permit": (2, {"pam.succeeds-on-nothing"}),
    "rootok-sshd": (2, {"pam.skips-code", "pam.succeeds-on-nothing"}),
    "nullok-empty-password": (2, {"pam.nullok"}),
    "module-use-first-pass": (1, {"pam.lockout", "pam.use-first-pass"}),
    "unix-use-first-pass": (1, {"pam.lockout", "pam.use-first-pass"}),
    "failmode-open": (1, {"pam.failmode-open"}),
    "sshd-publickey-alone": (2, {"sshd.publickey-only"}),
    "sshd-usepam-no": (2, {"sshd.usepam-no"}),
    "sshd-match-publickey": (2, {"sshd.publickey-only"}),
    "sshd-password-method": (1, {"sshd.password-method"}),
    "shipped-enroll-at-login": (0, set()),
    "enroll-at-login-sudo-no-account": (2, {"pam.enroll-at-login-account"}),
    "enroll-at-login-sshd-no-account": (1, {"pam.enroll-at-login-account"}),
}


@pytest.fixture(scope="module", autouse=True)
def sshd_privsep_dir():
    """`sshd -T` refuses to run without /run/sshd, sshd's own directory on every machine that
    runs it. Made if missing and left in place: removing it could break another sshd started
    meanwhile."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


def doctor(*args, socket=None):
    """(exit status, parsed --json output) of `twofactor admin doctor ARGS --json`."""
    command = [TWOFACTOR_CLI, "admin", "doctor", "--json", *args]
    if socket:
        command += ["--socket", socket]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=helpers.CLI_ENV)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, json.loads(done.stdout)


def serious(report):
    return {f["check"] for f in report["findings"] if f["severity"] in ("hole", "warning")}


def tree(name):
    return os.path.join(FIXTURES, name)


def test_every_fixture_tree_has_an_expected_verdict():
    assert set(os.listdir(FIXTURES)) - {"README.md"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_of_each_tree(name):
    status, report = doctor("--root", tree(name))
    expected_status, expected_checks = EXPECTED[name]
    assert (status, serious(report)) == (expected_status, expected_checks), json.dumps(report, indent=1)
    assert report["exit_status"] == status
    assert report["verdict"] == {0: "protected", 1: "warnings", 2: "hole"}[status]
    protected = {e["service"]: e["protected"] for e in report["entry_points"]}
    if status == 0:
        assert all(protected.values()), report["entry_points"]
    if any(check.startswith("sshd.") for check in expected_checks) and status == 2:
        assert not protected["sshd"], report["entry_points"]


def test_text_output_gives_the_fix_and_the_same_exit_status():
    done = subprocess.run([TWOFACTOR_CLI, "admin", "doctor", "--root", tree("jump-over")],
                          capture_output=True, text=True, timeout=120, env=helpers.CLI_ENV)
    assert done.returncode == 2, done.stderr
    assert "HOLE" in done.stdout and "jumps over pam_twofactor" in done.stdout, done.stdout
    assert "Fix: change the control of pam_unix.so" in done.stdout, done.stdout


def test_match_block_is_found_per_user():
    _, report = doctor("--root", tree("sshd-match-publickey"))
    hole = next(f for f in report["findings"] if f["check"] == "sshd.publickey-only")
    assert "user=alice" in hole["detail"] and "user=root" not in hole["detail"], hole


def test_match_group_is_evaluated_for_a_member(tmp_path, make_user):
    """A Match Group block that lets a key alone in is found through one of the group's members."""
    group = helpers.ThrowawayGroup(prefix="tfdg")
    try:
        member = make_user(prefix="tfdm", groups=(group.name,))
        root = tmp_path / "tree"
        shutil.copytree(tree("shipped-password-code"), root)
        with open(root / "etc" / "ssh" / "sshd_config", "a") as f:
            f.write(f"\nMatch Group {group.name}\n    AuthenticationMethods publickey\n")
        status, report = doctor("--root", str(root))
        hole = [f for f in report["findings"] if f["check"] == "sshd.publickey-only"]
        assert status == 2 and hole and f"user={member.name}" in hole[0]["detail"], report["findings"]
    finally:
        group.remove()


# --- each broken variant, for real -------------------------------------------------------------

def rewrite_module(text, socket, extra=""):
    """pam_twofactor.so -> the module under test on the private daemon (comments untouched)."""
    out = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            line = re.sub(r"(?<![\w/.-])pam_twofactor\.so(?![\w.])",
                          f"{PAM_MODULE} socket={socket}{extra}", line)
        out.append(line)
    return out


def install(pam_service, name, service, socket):
    """The tree's /etc/pam.d/<service> as a throwaway service; files it includes that this
    machine lacks are installed as throwaway services too, under their new names."""
    with open(os.path.join(tree(name), "etc", "pam.d", service)) as f:
        text = f.read()
    for included in set(re.findall(r"(?:include|substack)\s+(\S+)", text)):
        if os.path.exists(os.path.join("/etc/pam.d", included)):
            continue
        with open(os.path.join(tree(name), "etc", "pam.d", included)) as f:
            sub = pam_service(rewrite_module(f.read(), socket), prefix="tfdi")
        text = re.sub(rf"(?<=\s){re.escape(included)}(?=\s|$)", sub, text)
    return pam_service(rewrite_module(text, socket), prefix="tfdoc")


def login(service, user, answers):
    result = pamtester(service, user.name, answers, timeout=60)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode in (0, 1), output
    return result.returncode == 0, output


@pytest.mark.parametrize("name", ["sufficient-unix", "jump-over", "include-sufficient"])
def test_password_alone_opens_an_enrolled_account(name, daemon, user, pam_service):
    service = install(pam_service, name, "sudo", daemon.socket)
    daemon.enroll(user.name)
    ok, output = login(service, user, [user.password])
    assert ok and CODE_PROMPT not in output, output


def test_substack_keeps_sufficient_inside_it(daemon, user, pam_service):
    """The same rules as include-sufficient, through `substack`: the doctor says protected, and
    the code is still required."""
    service = install(pam_service, "substack-sufficient", "sudo", daemon.socket)
    enrolled = daemon.enroll(user.name)
    ok, output = login(service, user, [user.password, enrolled.codes.wrong_code()])
    assert not ok and CODE_PROMPT in output, output
    ok, output = login(service, user, [user.password, enrolled.code(1)])
    assert ok, output


def test_optional_module_accepts_a_wrong_code(daemon, user, pam_service):
    service = install(pam_service, "optional-module", "sudo", daemon.socket)
    enrolled = daemon.enroll(user.name)
    ok, output = login(service, user, [user.password, enrolled.codes.wrong_code()])
    assert ok and CODE_PROMPT in output, output


def test_ignore_then_permit_lets_an_unenrolled_account_in_on_nothing(daemon, user, pam_service):
    service = install(pam_service, "ignore-then-permit", "sshd", daemon.socket)
    ok, output = login(service, user, [])
    assert ok, output


@pytest.mark.parametrize("name, service", [("enroll-at-login-sudo-no-account", "sudo"), ("shipped-enroll-at-login", "sshd")])
def test_enroll_at_login_needs_its_account_line(name, service, daemon_factory, user, pam_service):
    """What the doctor's hole stands for. Enforcement on, an account that has not enrolled, the
    password only, one PAM handle (as sudo and su use it). Without the account line,
    pam_authenticate, pam_acct_mgmt and pam_setcred all succeed (the module's refusal in setcred
    is shown, and libpam ignores it: the chain frozen by pam_authenticate's PAM_IGNORE). With the
    shipped stack, pam_acct_mgmt begins the enrollment and refuses without a code from the app.
    (sshd, which authenticates on a handle of its own, does refuse at setcred: test_policy.)"""
    daemon = daemon_factory(enforce="yes")
    service = install(pam_service, name, service, daemon.socket)
    done = subprocess.run(["pamtester", "-v", service, user.name, "authenticate", "acct_mgmt", "setcred"],
                          input=(user.password + "\n").encode(), capture_output=True, timeout=60)
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert "successfully authenticated" in output, output
    if name == "enroll-at-login-sudo-no-account":
        assert done.returncode == 0 and "credential info has successfully been set" in output, output
        assert "required for this account but is not set up" in output, output  # the setcred refusal, shown
    else:
        assert done.returncode != 0 and "account management done" not in output, output
        assert "enroll-begin account=" + user.name in daemon.log(), daemon.log()
    assert daemon.request("status", {"user": user.name})["isEnrolled"] is False


def test_rootok_in_sshd_lets_anyone_in(daemon, user, pam_service):
    """pamtester runs as root, like sshd: pam_rootok succeeds for everybody there."""
    service = install(pam_service, "rootok-sshd", "sshd", daemon.socket)
    daemon.enroll(user.name)
    ok, output = login(service, user, [])
    assert ok, output


def test_nullok_lets_an_empty_password_in(daemon, user, pam_service):
    service = install(pam_service, "nullok-empty-password", "sudo", daemon.socket)
    subprocess.run(["passwd", "-d", user.name], check=True, capture_output=True)
    ok, output = login(service, user, [])
    assert ok, output


def test_module_use_first_pass_locks_the_owner_out(daemon, user, pam_service):
    """The token holds the password typed for pam_unix: the code is never asked."""
    service = install(pam_service, "module-use-first-pass", "sudo", daemon.socket)
    enrolled = daemon.enroll(user.name)
    ok, output = login(service, user, [user.password, enrolled.code(1)])
    assert not ok and CODE_PROMPT not in output, output


def test_unix_use_first_pass_locks_the_owner_out(daemon, user, pam_service):
    """pam_unix finds no token and fails without asking; the one prompt left is the code's, and
    even the right code cannot help."""
    service = install(pam_service, "unix-use-first-pass", "sudo", daemon.socket)
    enrolled = daemon.enroll(user.name)
    ok, output = login(service, user, [enrolled.code(1)])
    assert not ok and output.count(CODE_PROMPT) == 1 and "assword" not in output, output


def test_failmode_open_lets_the_password_alone_in_while_the_daemon_is_down(daemon, user, pam_service):
    service = install(pam_service, "failmode-open", "sudo", daemon.socket)
    daemon.enroll(user.name)
    ok, output = login(service, user, [user.password])
    assert not ok, output
    daemon.stop()
    ok, output = login(service, user, [user.password])
    assert ok and CODE_PROMPT not in output, output


class ConfiguredSshd(ThrowawaySshd):
    """A throwaway sshd whose authentication keywords are replaced (sshd takes the first value)."""

    def __init__(self, settings, *args, tail="", **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.tail = tail  # appended last (Match blocks)

    def _write_config(self):
        super()._write_config()
        with open(self.config) as f:
            lines = f.read().splitlines()
        keys = {k.lower() for k in self.settings}
        lines = [l for l in lines if l.split(" ", 1)[0].lower() not in keys]
        lines += [f"{k} {v}" for k, v in self.settings.items()]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n" + self.tail)


def paramiko():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import paramiko as module
    return module


def run_after(transport):
    channel = transport.open_session(timeout=20)
    channel.exec_command("id -un")
    return channel.makefile("rb").read().decode().strip()


def authorize_key(user):
    """A new key for `user`, in ~/.ssh/authorized_keys with the modes sshd's StrictModes wants."""
    pm = paramiko()
    keyfile = os.path.join(user.home, "id_doctor_test")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyfile], check=True)
    key = pm.Ed25519Key.from_private_key_file(keyfile)
    ssh_dir = os.path.join(user.home, ".ssh")
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    authorized = os.path.join(ssh_dir, "authorized_keys")
    with open(authorized, "w") as f:
        f.write(f"{key.get_name()} {key.get_base64()}\n")
    for path in (ssh_dir, authorized):
        os.chown(path, user.uid, user.gid)
    os.chmod(authorized, 0o600)
    return key


@pytest.mark.parametrize("name", ["sshd-publickey-alone", "sshd-match-publickey"])
def test_a_key_alone_never_asks_for_the_code(name, daemon, user):
    """sshd-publickey-alone: no AuthenticationMethods, so a key alone is enough;
    sshd-match-publickey: keyboard-interactive for everyone but a Match block's user."""
    pm = paramiko()
    daemon.enroll(user.name)
    key = authorize_key(user)
    with open(os.path.join(tree(name), "etc", "pam.d", "sshd")) as f:
        stack = rewrite_module(f.read(), daemon.socket)
    if name == "sshd-publickey-alone":
        settings, tail = {"PubkeyAuthentication": "yes", "AuthorizedKeysFile": ".ssh/authorized_keys",
                          "AuthenticationMethods": "any"}, ""
    else:
        settings = {"PubkeyAuthentication": "yes", "AuthorizedKeysFile": ".ssh/authorized_keys"}
        tail = f"Match User {user.name}\n    AuthenticationMethods publickey\n"
    with ConfiguredSshd(settings, stack, user.name, prefix="tfdk", tail=tail) as sshd:
        transport = pm.Transport(("127.0.0.1", sshd.port))
        try:
            transport.start_client(timeout=20)
            transport.auth_publickey(user.name, key)
            assert transport.is_authenticated()
            assert run_after(transport) == user.name
        finally:
            transport.close()


def test_usepam_no_lets_the_password_alone_in(daemon, user):
    pm = paramiko()
    daemon.enroll(user.name)
    with open(os.path.join(tree("sshd-usepam-no"), "etc", "pam.d", "sshd")) as f:
        stack = rewrite_module(f.read(), daemon.socket)
    settings = {"UsePAM": "no", "PasswordAuthentication": "yes", "AuthenticationMethods": "password"}
    with ConfiguredSshd(settings, stack, user.name, prefix="tfdp") as sshd:
        transport = pm.Transport(("127.0.0.1", sshd.port))
        try:
            transport.start_client(timeout=20)
            transport.auth_password(user.name, user.password)
            assert transport.is_authenticated()
            assert run_after(transport) == user.name
        finally:
            transport.close()


def test_password_method_cannot_ask_for_the_code(daemon, user):
    """sshd-password-method: the password method gives the one password to the code prompt too,
    so an enrolled account is refused there (and gets in with keyboard-interactive)."""
    pm = paramiko()
    enrolled = daemon.enroll(user.name)
    with open(os.path.join(tree("sshd-password-method"), "etc", "pam.d", "sshd")) as f:
        stack = rewrite_module(f.read(), daemon.socket)
    settings = {"PasswordAuthentication": "yes", "AuthenticationMethods": "any"}
    with ConfiguredSshd(settings, stack, user.name, prefix="tfdw") as sshd:
        transport = pm.Transport(("127.0.0.1", sshd.port))
        try:
            transport.start_client(timeout=20)
            with pytest.raises(pm.AuthenticationException):
                transport.auth_password(user.name, user.password)
        finally:
            transport.close()
        result = paramiko_login(sshd.port, user.name, user.password, enrolled.code(1))
        assert result.authenticated and result.asked_for_code(), result


# --- the node, live, against a private daemon ---------------------------------------------------

def test_enrollment_of_a_deleted_user_is_reported_and_inherited(daemon, pam_service):
    """userdel leaves the enrollment; a new account with the name gets the old phone's codes."""
    old = helpers.ThrowawayUser(prefix="tfdo")
    try:
        enrolled = daemon.enroll(old.name)
    finally:
        old.remove()
    _, report = doctor(socket=daemon.socket)
    orphan = [f for f in report["findings"] if f["check"] == "node.orphan" and old.name in f["title"]]
    assert orphan and orphan[0]["fix"] == f"twofactor admin reset {old.name} --yes", report["findings"]

    new = helpers.ThrowawayUser(name=old.name)
    try:
        service = pam_service([f"auth required pam_unix.so nodelay",
                               f"auth required {PAM_MODULE} socket={daemon.socket}"], prefix="tfdn")
        ok, output = login(service, new, [new.password, enrolled.code(1)])
        assert ok and CODE_PROMPT in output, output  # the old owner's code opens the new account
        subprocess.run([TWOFACTOR_CLI, "admin", "reset", old.name, "--yes", "--socket", daemon.socket],
                       check=True, capture_output=True)
        _, report = doctor(socket=daemon.socket)
        assert not [f for f in report["findings"] if f["check"] == "node.orphan" and old.name in f["title"]]
    finally:
        new.remove()


def test_require_lockout_lists_the_accounts_without_2fa(daemon, user, make_user, pam_service):
    service = pam_service(["@include common-auth",
                           f"auth required {PAM_MODULE} socket={daemon.socket} require"], prefix="tfdr")
    other = make_user(prefix="tfde")
    daemon.enroll(other.name)
    _, report = doctor("--service", service, socket=daemon.socket)
    lockout = [f for f in report["findings"] if f["check"] == "node.require-lockout"]
    assert lockout and user.name in lockout[0]["detail"], report["findings"]
    assert other.name not in lockout[0]["detail"]
    ok, output = login(service, user, [user.password])
    assert not ok and "Two-factor authentication is required" in output, output
    entry = next(e for e in report["entry_points"] if e["service"] == service)
    assert entry["protected"] and entry["unenrolled"] == "refused", entry
    daemon_ok = [f for f in report["findings"] if f["check"] == "node.daemon"]
    assert daemon_ok and daemon_ok[0]["severity"] == "ok", report["findings"]


def test_unreachable_daemon_is_a_warning(daemon):
    socket = daemon.socket
    daemon.stop()
    status, report = doctor("--root", tree("shipped-password-code"), socket=socket)
    assert status == 1 and serious(report) == {"node.daemon"}, report


def test_module_file_writable_by_others_is_a_hole(tmp_path, pam_service):
    """The module runs as root inside sshd and sudo: a copy anyone may rewrite is a hole."""
    directory = tmp_path / "lib"
    directory.mkdir()
    os.chmod(tmp_path, 0o755)
    copy = directory / "pam_twofactor.so"
    shutil.copy(PAM_MODULE, copy)
    service = pam_service(["@include common-auth", f"auth required {copy}"], prefix="tfdf")
    os.chmod(copy, 0o644)
    _, report = doctor("--service", service, socket="/nonexistent/twofactord.sock")
    mode = [f for f in report["findings"] if f["check"] == "node.module-mode" and str(copy) in f["title"]]
    assert mode and mode[0]["severity"] == "ok", report["findings"]
    os.chmod(copy, 0o666)
    status, report = doctor("--service", service, socket="/nonexistent/twofactord.sock")
    mode = [f for f in report["findings"] if f["check"] == "node.module-mode" and str(copy) in f["title"]]
    assert status == 2 and mode and mode[0]["severity"] == "hole", report["findings"]


# --- the model against libpam: every tree's sshd and sudo stacks, run for real ------------------

class LibPam:
    """pam_start/pam_authenticate/pam_end through ctypes, as root (like pamtester and sshd),
    answering each prompt by its text: the code prompt, the one-prompt "Password and two-factor
    code", anything with "assword". Failure delays are skipped through PAM_FAIL_DELAY."""

    PAM_FAIL_DELAY = 10

    def __init__(self):
        import ctypes
        self.c = ctypes
        self.pam = ctypes.CDLL("libpam.so.0")
        self.libc = ctypes.CDLL("libc.so.6")
        self.libc.calloc.restype = ctypes.c_void_p
        self.libc.strdup.restype = ctypes.c_void_p
        self.libc.strdup.argtypes = [ctypes.c_char_p]

        class Message(ctypes.Structure):
            _fields_ = [("style", ctypes.c_int), ("text", ctypes.c_char_p)]

        class Response(ctypes.Structure):
            _fields_ = [("resp", ctypes.c_void_p), ("retcode", ctypes.c_int)]

        self.Message, self.Response = Message, Response
        self.Conv = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.POINTER(Message)),
                                     ctypes.POINTER(ctypes.POINTER(Response)), ctypes.c_void_p)
        self.Delay = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)

        class Conversation(ctypes.Structure):
            _fields_ = [("conv", self.Conv), ("appdata", ctypes.c_void_p)]

        self.Conversation = Conversation

    def authenticate(self, service, user, password, code):
        """(succeeded, the prompts asked)."""
        c = self.c
        prompts = []

        def answer(text):
            if "Password and two-factor code" in text:
                return password + code
            if CODE_PROMPT.strip() in text:
                return code
            if "assword" in text:
                return password
            return ""

        def conv(count, messages, responses, _data):
            array = self.libc.calloc(count, c.sizeof(self.Response))
            replies = c.cast(array, c.POINTER(self.Response))
            for i in range(count):
                message = messages[i].contents
                text = (message.text or b"").decode(errors="replace")
                if message.style in (1, 2):  # PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON
                    prompts.append(text)
                    replies[i].resp = self.libc.strdup(answer(text).encode())
            responses[0] = replies
            return 0

        callback = self.Conv(conv)
        no_delay = self.Delay(lambda *_: None)
        conversation = self.Conversation(callback, None)
        handle = c.c_void_p()
        assert self.pam.pam_start(service.encode(), user.encode(), c.byref(conversation), c.byref(handle)) == 0
        try:
            self.pam.pam_set_item(handle, self.PAM_FAIL_DELAY, no_delay)
            status = self.pam.pam_authenticate(handle, 0)
        finally:
            self.pam.pam_end(handle, 0)
        return status == 0, prompts


def stack_cases():
    """(tree, service) for the sshd and sudo stacks of every tree, each distinct stack once."""
    seen, cases = set(), []
    for name in sorted(EXPECTED):
        for service in ("sshd", "sudo"):
            with open(os.path.join(tree(name), "etc", "pam.d", service)) as f:
                text = f.read()
            if text not in seen:
                seen.add(text)
                cases.append((name, service))
    return cases


@pytest.mark.parametrize("name,service", stack_cases(), ids=lambda v: v)
def test_the_model_agrees_with_libpam(name, service, daemon, user, make_user, pam_service):
    """What the doctor says of a stack (owner gets in, password alone, code alone, nothing, an
    account without 2FA) is what libpam does with it, answer by answer."""
    _, report = doctor("--root", tree(name))
    verdict = next(e for e in report["entry_points"] if e["service"] == service)
    installed = install(pam_service, name, service, daemon.socket)
    enrolled = daemon.enroll(user.name)
    codes = iter(enrolled.recovery_codes)  # single-use codes, no waiting for TOTP steps
    wrong = enrolled.codes.wrong_code()
    other = make_user(prefix="tfdu")
    pam = LibPam()

    owner, prompts = pam.authenticate(installed, user.name, user.password, next(codes))
    assert owner == (verdict["summary"].find("cannot log in") < 0), (verdict, prompts)
    if owner:
        assert verdict["asks_code"] == any(CODE_PROMPT.strip() in p or "two-factor code" in p for p in prompts), prompts
    password_alone, prompts = pam.authenticate(installed, user.name, user.password, wrong)
    assert password_alone == verdict["password_alone"], (verdict, prompts)
    code_alone, prompts = pam.authenticate(installed, user.name, "not-" + user.password, next(codes))
    assert code_alone == verdict["code_alone"], (verdict, prompts)
    nothing_enrolled, _ = pam.authenticate(installed, user.name, "", "")
    nothing_unenrolled, _ = pam.authenticate(installed, other.name, "", "")
    assert (nothing_enrolled or nothing_unenrolled) == verdict["nothing"], verdict
    unenrolled, prompts = pam.authenticate(installed, other.name, other.password, wrong)
    assert unenrolled == (verdict["unenrolled"] != "refused"), (verdict, prompts)
