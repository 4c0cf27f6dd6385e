"""The login policy (exempt_networks, exempt_groups, require_groups), the audit log's JSON form
and journal fields, and the fail2ban filter (contrib/fail2ban), against the real daemon, the real
module through pamtester and a throwaway sshd reached from two loopback addresses."""
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

import helpers
import ssh_kit
import twofactor_wire as wire
from helpers import CODE_PROMPT, ThrowawayGroup, pamtester

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER = os.path.join(REPO, "contrib", "fail2ban", "filter.d", "twofactor.conf")


@pytest.fixture
def group():
    g = ThrowawayGroup()
    try:
        yield g
    finally:
        g.remove()


def stack(daemon, *options):
    return ssh_kit.pam_lines([f"socket={daemon.socket}", *options])


def output(done):
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def asked_for_code(done):
    return CODE_PROMPT.strip() in output(done)


def check_lines(daemon, account):
    """The account's check lines, without the node=NAME every line ends with (test_fleet_tools)."""
    return [re.sub(r" node=\S+$", "", line) for line in daemon.log().splitlines()
            if line.startswith(f"check account={account} ")]


# --- exempt_networks -----------------------------------------------------------------------------

EXEMPT = "192.0.2.0/24 2001:db8::/32"
# Literal addresses inside the exempt networks (the v4-mapped form is how a dual-stack sshd may
# report an IPv4 client).
INSIDE = ("192.0.2.9", "2001:db8::5", "::ffff:192.0.2.9")
# Outside, empty, host names and forgeries that only look like an address inside: never exempt.
NEVER_EXEMPT = ("198.51.100.1", "", "localhost", "host.example", "192.0.2.9 ", " 192.0.2.9",
                "192.0.2.9x", "192.0.2", "0xc0.0.2.9", "192.0.2.9/24", "2001:db8::5%lo",
                "[2001:db8::5]", "192.0.2.9\tx", "::ffff:198.51.100.1")


def test_an_exempt_network_skips_the_code_only_for_a_literal_address_inside_it(daemon_factory, user, pam_service):
    daemon = daemon_factory(exempt_networks=EXEMPT)
    daemon.enroll(user.name)
    service = pam_service(stack(daemon))
    for rhost in INSIDE:
        done = pamtester(service, user.name, [user.password], items={"rhost": rhost})
        assert done.returncode == 0 and not asked_for_code(done), (rhost, output(done))
    lines = check_lines(daemon, user.name)
    assert f"check account={user.name} service={service} rhost=192.0.2.9 tty=- rule=exempt-network " \
           f"detail=192.0.2.0/24 result=ok reason=ok" in lines, lines
    assert any("rhost=2001:db8::5 " in line and "detail=2001:db8::/32" in line for line in lines), lines
    for rhost in NEVER_EXEMPT:
        done = pamtester(service, user.name, [user.password, ""], items={"rhost": rhost})
        assert done.returncode != 0 and asked_for_code(done), (repr(rhost), output(done))
    assert all("rule=enrolled" in line for line in check_lines(daemon, user.name)[len(INSIDE):])


def test_an_exemption_never_replaces_the_password(daemon_factory, user, pam_service):
    """Exempt is answered like an unenrolled account (PAM_IGNORE): a wrong password still fails,
    and a stack whose only success would be the module (the key-and-code stack) refuses."""
    daemon = daemon_factory(exempt_networks=EXEMPT)
    daemon.enroll(user.name)
    service = pam_service(stack(daemon))
    done = pamtester(service, user.name, ["wrong-" + user.password], items={"rhost": "192.0.2.9"})
    assert done.returncode != 0, output(done)
    alone = pam_service([f"auth [success=done default=die] {helpers.PAM_MODULE} socket={daemon.socket} require",
                         "auth requisite pam_deny.so", "account required pam_unix.so"])
    done = pamtester(alone, user.name, [], items={"rhost": "192.0.2.9"})
    assert done.returncode != 0 and not asked_for_code(done), output(done)


def test_exempt_groups_and_require_groups(daemon_factory, make_user, group, pam_service):
    """exempt_groups skips the code; require_groups refuses an unenrolled member (with the
    instruction), outranks every exemption, and leaves non-members alone."""
    exempt_group = ThrowawayGroup()
    try:
        daemon = daemon_factory(exempt_networks=EXEMPT, exempt_groups=exempt_group.name,
                                require_groups=group.name)
        relaxed = make_user(groups=[exempt_group.name])
        daemon.enroll(relaxed.name)
        member = make_user(groups=[group.name])
        member_in_both = make_user(groups=[group.name, exempt_group.name])
        outsider = make_user()
        service = pam_service(stack(daemon))

        done = pamtester(service, relaxed.name, [relaxed.password], items={"rhost": "198.51.100.1"})
        assert done.returncode == 0 and not asked_for_code(done), output(done)
        assert f"rule=exempt-group detail={exempt_group.name} result=ok" in check_lines(daemon, relaxed.name)[-1]

        for person in (member, member_in_both):
            for rhost in ("198.51.100.1", "192.0.2.9"):  # the exempt network does not help either
                done = pamtester(service, person.name, [person.password], items={"rhost": rhost})
                assert done.returncode != 0, (person.name, rhost, output(done))
                assert f"required for members of {group.name}" in output(done), output(done)
                assert "twofactor enable" in output(done)
            assert check_lines(daemon, person.name)[-1].endswith(
                f"rule=require-group detail={group.name} result=rejected reason=required")

        done = pamtester(service, outsider.name, [outsider.password], items={"rhost": "198.51.100.1"})
        assert done.returncode == 0, output(done)
        assert "rule=optional detail=- result=ok reason=not-enrolled" in check_lines(daemon, outsider.name)[-1]

        enrolled = daemon.enroll(member.name)
        done = pamtester(service, member.name, [member.password, enrolled.codes.next_code()],
                         items={"rhost": "192.0.2.9"})
        assert done.returncode == 0 and asked_for_code(done), output(done)
    finally:
        exempt_group.remove()


def test_sshd_logins_from_an_exempt_and_a_non_exempt_address(daemon_factory, make_user):
    """The same sshd, reached from 127.0.0.2 (exempt) and 127.0.0.1 (not): the loopback aliases
    need no set-up. paramiko and OpenSSH's client; a group-required account is refused."""
    required_group = ThrowawayGroup()
    try:
        daemon = daemon_factory(exempt_networks="127.0.0.2/32", require_groups=required_group.name)
        person = make_user(prefix="tfx")
        enrollment = daemon.enroll(person.name)
        unenrolled = make_user(prefix="tfx", groups=[required_group.name])
        client = ssh_kit.OpenSshClient()
        with ssh_kit.ThrowawaySshd(stack(daemon), allow_users="tfx*") as sshd:
            exempt = ssh_kit.paramiko_login(sshd.port, person.name, person.password, source="127.0.0.2")
            assert exempt.authenticated and not exempt.asked_for_code(), exempt
            assert exempt.output.strip() == person.name
            without_code = ssh_kit.paramiko_login(sshd.port, person.name, person.password, source="127.0.0.1")
            assert not without_code.authenticated and without_code.asked_for_code(), without_code
            with_code = ssh_kit.paramiko_login(sshd.port, person.name, person.password,
                                               code=enrollment.codes.next_code(), source="127.0.0.1")
            assert with_code.authenticated and with_code.asked_for_code(), with_code

            exempt = client.login(sshd.port, person.name, person.password, source="127.0.0.2")
            assert exempt.authenticated and not exempt.asked_for_code(), exempt
            asked = client.login(sshd.port, person.name, person.password, source="127.0.0.1")
            assert not asked.authenticated and asked.asked_for_code(), asked

            for source in ("127.0.0.2", "127.0.0.1"):
                refused = ssh_kit.paramiko_login(sshd.port, unenrolled.name, unenrolled.password, source=source)
                assert not refused.authenticated, refused
        lines = check_lines(daemon, person.name)
        assert any("rhost=127.0.0.2 " in l and "rule=exempt-network detail=127.0.0.2/32" in l for l in lines), lines
        assert any("rhost=127.0.0.1 " in l and "rule=enrolled" in l for l in lines), lines
        client.destroy()
    finally:
        required_group.remove()


# --- the audit log's JSON form and journal fields --------------------------------------------------

def test_audit_format_json_writes_one_object_per_line_with_stable_keys(daemon_factory, user, pam_service):
    daemon = daemon_factory(audit_format="json", max_failures=2, node_name="node-a")
    enrollment = daemon.enroll(user.name)
    service = pam_service(stack(daemon))
    for _ in range(2):
        pamtester(service, user.name, [user.password, enrollment.codes.wrong_code()],
                  items={"rhost": "192.0.2.77", "tty": "pts/3"})
    crafted = 'x" rhost=203.0.113.9 \\ "'
    # What the module sends for a name without a passwd entry (phase 3).
    daemon.request("check", {"user": crafted, "remoteHost": "192.0.2.78", "phase": 3})
    events = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    assert all(isinstance(e, dict) and list(e)[:2] == ["time", "event"] for e in events), events
    verifies = [e for e in events if e["event"] == "verify"]
    assert list(verifies[0]) == ["time", "event", "account", "service", "rhost", "tty", "method", "result", "reason", "node"]
    assert verifies[0] | {"time": None} == {"time": None, "event": "verify", "account": user.name, "service": service,
                                            "rhost": "192.0.2.77", "tty": "pts/3", "method": None,
                                            "result": "rejected", "reason": "wrong-code", "node": "node-a"}
    lockout = [e for e in events if e["event"] == "lockout"]
    assert lockout and list(lockout[0]) == ["time", "event", "account", "until", "failures", "rhost", "node"]
    assert lockout[0]["rhost"] == "192.0.2.77" and lockout[0]["failures"] == 2
    unknown = [e for e in events if e["event"] == "check" and e["reason"] == "unknown-user"]
    assert unknown and unknown[0]["account"] == crafted and unknown[0]["rhost"] == "192.0.2.78", unknown
    assert list(unknown[0]) == ["time", "event", "account", "service", "rhost", "tty", "rule", "detail",
                                "result", "reason", "node"]
    management = [e for e in events if e["event"] == "enroll-confirm"]
    assert management and management[0]["by"] == "root" and management[0]["uid"] == 0
    assert datetime.datetime.fromisoformat(events[0]["time"].replace("Z", "+00:00")).tzinfo is not None


def test_under_systemd_audit_lines_carry_journal_fields(daemon_factory, user, monkeypatch):
    """With JOURNAL_STREAM set (systemd) and log = auto, each line goes to the journal's native
    socket as structured fields. journald is not running here: a datagram socket of the test
    stands in for it at TWOFACTORD_JOURNAL_SOCKET and reads what the real daemon sends."""
    directory = tempfile.mkdtemp(prefix="tfj-", dir="/tmp")
    path = os.path.join(directory, "socket")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        journal.bind(path)
        journal.settimeout(10)
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        monkeypatch.setenv("TWOFACTORD_JOURNAL_SOCKET", path)
        daemon = daemon_factory(log="auto", exempt_networks="192.0.2.0/24")
        daemon.request("check", {"user": user.name, "remoteHost": "192.0.2.5", "service": "sshd"})
        entries = []
        while not any(e.get("TWOFACTOR_EVENT") == "check" for e in entries):
            datagram = journal.recv(65536).decode()
            entries.append(dict(line.split("=", 1) for line in datagram.splitlines()))
        check = next(e for e in entries if e.get("TWOFACTOR_EVENT") == "check")
        assert check["SYSLOG_IDENTIFIER"] == "twofactord" and check["PRIORITY"] == "6"
        assert check["TWOFACTOR_ACCOUNT"] == user.name and check["TWOFACTOR_RHOST"] == "192.0.2.5"
        assert check["TWOFACTOR_RULE"] == "exempt-network" and check["TWOFACTOR_DETAIL"] == "192.0.2.0/24"
        assert check["TWOFACTOR_RESULT"] == "ok" and check["TWOFACTOR_SERVICE"] == "sshd"
        assert check["MESSAGE"].startswith(f"check account={user.name} service=sshd rhost=192.0.2.5 ")
        assert "check account=" not in daemon.log()  # sent once, to the journal
    finally:
        journal.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- fail2ban ------------------------------------------------------------------------------------------

def fail2ban_regex(lines, tmp_path):
    """Runs Debian's fail2ban-regex with contrib's filter over `lines`, each prefixed as rsyslog
    writes /var/log/auth.log. Returns {host: number of matches} and the tool's output."""
    filters = tmp_path / "filter.d"
    filters.mkdir()
    shutil.copy(FILTER, filters / "twofactor.conf")
    os.symlink("/etc/fail2ban/filter.d/common.conf", filters / "common.conf")
    stamp = datetime.datetime.now().strftime("%b %d %H:%M:%S").replace(" 0", "  ", 1)
    log = tmp_path / "auth.log"
    log.write_text("".join(f"{stamp} testhost twofactord[4242]: {line}\n" for line in lines))
    done = subprocess.run(["fail2ban-regex", "-v", str(log), str(filters / "twofactor.conf")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    hosts = {}
    for host in re.findall(r"^\|\s{6}(\S+)\s{2}", done.stdout, re.M):
        hosts[host] = hosts.get(host, 0) + 1
    return hosts, done.stdout


@pytest.mark.parametrize("audit_format", ["text", "json"])
def test_fail2ban_filter_matches_what_the_daemon_wrote(daemon_factory, user, pam_service, tmp_path, audit_format):
    """Wrong codes, the lockout and an unknown user are matched with their rhost; an accepted
    code, an exempt login, a login without rhost and a user name crafted to look like another
    host are not (or only with the real host)."""
    daemon = daemon_factory(audit_format=audit_format, max_failures=3, exempt_networks="192.0.2.128/25")
    enrollment = daemon.enroll(user.name)
    service = pam_service(stack(daemon))
    for _ in range(3):  # the third starts the lockout
        done = pamtester(service, user.name, [user.password, enrollment.codes.wrong_code()],
                         items={"rhost": "192.0.2.50"})
        assert done.returncode != 0
    ghost = helpers.unique_name("tfghost")
    assert pamtester(service, ghost, ["x"], items={"rhost": "2001:db8::51"}).returncode != 0
    daemon.request("check", {"user": "evil rhost=203.0.113.9", "remoteHost": "192.0.2.53", "phase": 3})
    pamtester(service, user.name, [user.password, enrollment.codes.wrong_code()])  # no rhost (sudo)
    pamtester(service, user.name, [user.password], items={"rhost": "192.0.2.200"})  # exempt

    lines = daemon.log().splitlines()
    hosts, report = fail2ban_regex(lines, tmp_path)
    # 3 wrong codes + the lockout line; the unknown user; the crafted name with its real host.
    assert hosts == {"192.0.2.50": 4, "2001:db8::51": 1, "192.0.2.53": 1}, report
    assert "203.0.113.9" not in hosts and "192.0.2.200" not in hosts


# --- enforcement: deadline, grace logins, enrollment at login ---------------------------------------

def day(offset_days):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=offset_days)).strftime("%Y-%m-%d")


def test_before_the_deadline_an_unenrolled_login_passes_and_is_told_what_is_left(daemon_factory, user, pam_service):
    daemon = daemon_factory(enforce="yes", enforce_from=day(10))
    service = pam_service(stack(daemon))
    done = pamtester(service, user.name, [user.password], items={"rhost": "192.0.2.9"})
    assert done.returncode == 0, output(done)
    assert f"will be required for this account from {day(10)} (in 10 days)" in output(done), output(done)
    assert "twofactor enable" in output(done)
    assert check_lines(daemon, user.name)[-1].endswith("rule=enforce-grace detail=all result=ok reason=not-enrolled")

    daemon.stop()
    daemon.config["enforce_from"] = day(-1)
    daemon.start()
    done = pamtester(service, user.name, [user.password], items={"rhost": "192.0.2.9"})
    assert done.returncode != 0, output(done)
    assert "now required for this account" in output(done) and "twofactor enable" in output(done), output(done)
    assert check_lines(daemon, user.name)[-1].endswith("rule=enforce detail=all result=rejected reason=required")


def enroll_stack(daemon):
    """The shipped shape with enrollment at login: the password, the module in auth and account."""
    module = f"{helpers.PAM_MODULE} socket={daemon.socket} enroll_at_login"
    return ["auth required pam_unix.so nodelay", f"auth required {module}",
            "account required pam_unix.so", f"account required {module}",
            "session required pam_unix.so"]


def test_grace_logins_are_counted_only_for_logins_that_succeeded(daemon_factory, make_user):
    """enforce_grace_logins = 2 after the deadline: two logins through sshd pass (counted at
    pam_setcred, after the login succeeded), the third is refused; wrong passwords in between
    use none up."""
    daemon = daemon_factory(enforce="yes", enforce_from=day(-1), enforce_grace_logins=2)
    person = make_user(prefix="tfg")
    with ssh_kit.ThrowawaySshd(stack(daemon), allow_users="tfg*") as sshd:
        for _ in range(3):
            wrong = ssh_kit.paramiko_login(sshd.port, person.name, "wrong-" + person.password)
            assert not wrong.authenticated, wrong
        for used in (1, 2):
            ok = ssh_kit.paramiko_login(sshd.port, person.name, person.password)
            assert ok.authenticated and ok.output.strip() == person.name, ok
            assert f"grace-login account={person.name} service={sshd.service} rhost=127.0.0.1 used={used} allowed=2" \
                in daemon.log(), daemon.log()
        refused = ssh_kit.paramiko_login(sshd.port, person.name, person.password)
        assert not refused.authenticated, refused
    assert daemon.log().count(f"grace-login account={person.name} ") == 2


class EnrollingClient:
    """Answers an enrollment at login like a person with a phone: reads the key from the PAM
    text, answers the code prompt with oathtool's code (or `codes` given), keeps everything."""

    def __init__(self, codes=None, drop=False):
        self.texts = []
        self.secret = None
        self.codes = codes
        self.drop = drop

    def handler(self, password):
        def answer(title, instructions, prompt_list):
            for text in (title, instructions):
                if text:
                    self.texts.append(text)
                    found = re.search(r"^ {4}((?:[A-Z2-7]{4} ?)+)$", text, re.M)
                    if found:
                        self.secret = found.group(1).replace(" ", "")
            answers = []
            for prompt, _echo in prompt_list:
                self.texts.append(prompt)
                # sshd puts the PAM text shown before a prompt in front of the prompt's text.
                found = re.search(r"^ {4}((?:[A-Z2-7]{4} ?)+)$", prompt, re.M)
                if found:
                    self.secret = found.group(1).replace(" ", "")
                if "Code from the app" in prompt:
                    if self.drop:
                        raise EOFError("the person closes the connection")
                    answers.append(self.codes.pop(0) if self.codes else helpers.totp(self.secret))
                elif "password" in prompt.lower():
                    answers.append(password)
                else:
                    answers.append("")
            return answers
        return answer

    def login(self, port, user, password, timeout=20):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import paramiko
        transport = paramiko.Transport(("127.0.0.1", port))
        try:
            transport.start_client(timeout=timeout)
            try:
                transport.auth_interactive(user, self.handler(password))
            except (paramiko.AuthenticationException, paramiko.SSHException, EOFError):
                return None
            channel = transport.open_session(timeout=timeout)
            channel.exec_command("id -un")
            return channel.makefile("rb").read().decode().strip()
        finally:
            transport.close()


def qr_decoded(text, scale=4):
    """The QR code drawn in `text` (Unicode half blocks), read back by zbarimg from a PBM image."""
    rows = [line for line in text.splitlines() if line and set(line) <= set(" \u2580\u2584\u2588")
            and set(line) & set("\u2580\u2584\u2588")]
    assert rows, text
    width = max(len(r) for r in rows) + 8
    pixels = []
    for line in ["" ] * 2 + rows + [""] * 2:
        line = line.ljust(width - 4).rjust(width)
        top = [c in "\u2580\u2588" for c in line]
        bottom = [c in "\u2584\u2588" for c in line]
        pixels += [top, bottom]
    body = "\n".join(" ".join("1" if dark else "0" for dark in row for _ in range(scale))
                     for row in pixels for _ in range(scale))
    with tempfile.NamedTemporaryFile("w", suffix=".pbm", delete=False) as f:
        f.write(f"P1\n{width * scale} {len(pixels) * scale}\n{body}\n")
    try:
        done = subprocess.run(["zbarimg", "--quiet", "--raw", f.name], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(f.name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def status_of(daemon, name):
    answer = daemon.request("status", {"user": name})
    return answer["isEnrolled"], answer["pending"]


def test_enrollment_at_login_through_sshd(daemon_factory, make_user):
    """After the deadline, with enroll_at_login: the key is shown as PAM text, a code from the
    app confirms it, the recovery codes are shown, and the login continues. A wrong password
    never reaches enrollment; wrong codes and a dropped connection leave nothing enabled."""
    daemon = daemon_factory(enforce="yes", enforce_from=day(-1))
    person = make_user(prefix="tfe")
    with ssh_kit.ThrowawaySshd(enroll_stack(daemon), allow_users="tfe*") as sshd:
        # A wrong password: the person is never shown a key, the daemon never began an enrollment.
        stranger = EnrollingClient()
        assert stranger.login(sshd.port, person.name, "wrong-" + person.password) is None
        assert stranger.secret is None and not any("Code from the app" in t for t in stranger.texts), stranger.texts
        assert "enroll-begin" not in daemon.log()

        # Wrong codes three times, then a dropped connection: nothing enabled either way.
        clumsy = EnrollingClient(codes=["000000", "111111", "222222"])
        assert clumsy.login(sshd.port, person.name, person.password) is None
        assert clumsy.secret and status_of(daemon, person.name) == (False, False), clumsy.texts
        dropped = EnrollingClient(drop=True)
        assert dropped.login(sshd.port, person.name, person.password) is None
        assert dropped.secret and status_of(daemon, person.name)[0] is False

        # The real thing.
        phone = EnrollingClient()
        assert phone.login(sshd.port, person.name, person.password) == person.name, phone.texts
        shown = "\n".join(phone.texts)
        assert "otpauth://totp/" in shown and "recovery codes" in shown, shown
        assert qr_decoded(shown) == re.search(r"^(otpauth://\S+)$", shown, re.M).group(1), shown
        recovery = re.findall(r"^ {4}([A-Za-z0-9]{4}-[A-Za-z0-9]{4}-[A-Za-z0-9]{4})$", shown, re.M)
        assert len(recovery) == 8, shown
        assert status_of(daemon, person.name) == (True, False)
        assert "enroll-confirm account=" + person.name in daemon.log()

        # From now on the code is asked like for anyone enrolled.
        codes = helpers.Codes(phone.secret)
        codes.last_step = codes.step_now()  # the confirming code's step is used up
        again = ssh_kit.paramiko_login(sshd.port, person.name, person.password, code=codes.next_code())
        assert again.authenticated and again.asked_for_code(), again
        with_recovery = ssh_kit.paramiko_login(sshd.port, person.name, person.password, code=recovery[0])
        assert with_recovery.authenticated, with_recovery


def test_enrollment_at_login_never_follows_a_failed_first_factor_in_pamtester(daemon_factory, user, pam_service):
    """pamtester runs acct_mgmt only after authenticate succeeded (as sshd and sudo do): a wrong
    password never reaches the enrollment; the right one does (and without a code to give, the
    enrollment is cancelled and nothing is enabled)."""
    daemon = daemon_factory(require_groups="", enforce="yes")
    service = pam_service(enroll_stack(daemon))
    done = subprocess.run(["pamtester", "-v", service, user.name, "authenticate", "acct_mgmt"],
                          input=b"wrong-password\n", capture_output=True, timeout=60)
    assert done.returncode != 0 and "Code from the app" not in output(done), output(done)
    assert "enroll-begin" not in daemon.log()
    done = subprocess.run(["pamtester", "-v", service, user.name, "authenticate", "acct_mgmt"],
                          input=f"{user.password}\n".encode(), capture_output=True, timeout=60)
    assert done.returncode != 0 and "Code from the app" in output(done), output(done)
    assert "enroll-begin account=" + user.name in daemon.log()
    assert status_of(daemon, user.name) == (False, False)


def test_sshd_without_the_account_line_refuses_an_owed_enrollment_at_setcred(daemon_factory, make_user):
    """sshd: enroll_at_login on the auth line alone lets the password through auth; pam_setcred (on
    the same auth line) then refuses. This holds for sshd's keyboard-interactive only, which runs
    pam_authenticate in a process of its own, so the handle that runs pam_setcred has no chain
    frozen by auth's PAM_IGNORE (sudo and su are not so: test_doctor's enroll_at_login test)."""
    daemon = daemon_factory(enforce="yes")
    person = make_user(prefix="tfs")
    lines = [l for l in enroll_stack(daemon) if not (l.startswith("account") and "enroll_at_login" in l)]
    with ssh_kit.ThrowawaySshd(lines, allow_users="tfs*") as sshd:
        try:
            result = ssh_kit.paramiko_login(sshd.port, person.name, person.password)
            assert not (result.authenticated and result.output.strip() == person.name), result
        except (ConnectionError, EOFError):
            pass  # sshd ends the connection when pam_setcred fails
        assert "pam_setcred" in sshd.log() or "setcred" in sshd.log().lower(), sshd.log()
    assert status_of(daemon, person.name)[0] is False


def test_the_shipped_enroll_at_login_stack_enrolls_only_after_the_password(daemon_factory, make_user):
    """pam.d/sshd-enroll-at-login.example as shipped (Debian's common-auth and common-account),
    behind a real sshd: OpenSSH's client and paramiko with a wrong password never see a key; the
    right password enrolls (paramiko plays the phone); OpenSSH's client, which cannot answer the
    code prompt, leaves nothing enabled."""
    from test_examples import example_lines
    daemon = daemon_factory(enforce="yes")
    person = make_user(prefix="tfk")
    client = ssh_kit.OpenSshClient()
    try:
        with ssh_kit.ThrowawaySshd(example_lines("sshd-enroll-at-login.example", daemon.socket),
                                   allow_users="tfk*") as sshd:
            wrong = client.login(sshd.port, person.name, "wrong-" + person.password)
            assert not wrong.authenticated and not any("Code from the app" in p for p in wrong.prompts), wrong
            stranger = EnrollingClient()
            assert stranger.login(sshd.port, person.name, "wrong-" + person.password) is None
            assert stranger.secret is None, stranger.texts
            assert "enroll-begin" not in daemon.log()

            unanswered = client.login(sshd.port, person.name, person.password)
            assert not unanswered.authenticated, unanswered
            assert any("Code from the app" in p for p in unanswered.prompts), unanswered
            assert status_of(daemon, person.name)[0] is False

            phone = EnrollingClient()
            assert phone.login(sshd.port, person.name, person.password) == person.name, phone.texts
            assert status_of(daemon, person.name) == (True, False)
    finally:
        client.destroy()


def sudo_enrolling(user, password, answer_code=True, timeout=60):
    """`sudo id -u` as `user` under a terminal (NOTES.md's recipe), enrolling when asked: the
    key is read off the screen and oathtool's code typed. Returns (exit status, transcript)."""
    import io
    import pexpect
    transcript = io.StringIO()
    child = pexpect.spawn("su", ["--pty", "-", user, "-c", "sudo -k; sudo id -u"], timeout=timeout,
                          encoding="utf-8", codec_errors="replace",
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb", "LANG": "C"})
    child.logfile_read = transcript
    try:
        child.expect(rf"\[sudo\] password for {re.escape(user)}: ")
        child.sendline(password)
        if child.expect(["Code from the app: ", pexpect.EOF]) == 0:
            secret = re.search(r"^ {4}((?:[A-Z2-7]{4} ?)+)\r?$", transcript.getvalue(), re.M).group(1)
            child.sendline(helpers.totp(secret.replace(" ", "")) if answer_code else "000000")
            while child.expect(["Press Enter[^\n]*: ", "Code from the app: ", pexpect.EOF]) != 2:
                child.sendline("" if "Press Enter" in child.after else "000000")
    finally:
        child.close(force=True)
    return child.exitstatus, transcript.getvalue()


def test_enrollment_at_login_through_sudo(daemon_factory, make_user):
    """sudo with its own PAM service (a sudoers.d drop-in, removed afterwards): a wrong password
    never reaches enrollment, wrong codes enable nothing, the right code enrolls and sudo runs."""
    from e2e import SudoGrant
    daemon = daemon_factory(require_groups="", enforce="yes")
    person = make_user(prefix="tfo")
    grant = SudoGrant(person.name, lines=enroll_stack(daemon))
    try:
        status, transcript = sudo_enrolling(person.name, "wrong-" + person.password)
        assert status != 0 and "Code from the app" not in transcript, transcript
        assert "enroll-begin" not in daemon.log()
        status, transcript = sudo_enrolling(person.name, person.password, answer_code=False)
        assert status != 0 and "was not set up" in transcript, transcript
        assert status_of(daemon, person.name) == (False, False)
        status, transcript = sudo_enrolling(person.name, person.password)
        assert status == 0 and re.search(r"^0\r?$", transcript, re.M), transcript
        assert "recovery codes" in transcript
        assert status_of(daemon, person.name) == (True, False)
    finally:
        grant.remove()


def test_only_roots_remote_host_is_believed(daemon_factory, user, tmp_path):
    """A local user asking about its own account names any rhost it likes: that must neither
    exempt it nor put the address in the audit log, where fail2ban would ban a stranger."""
    daemon = daemon_factory(exempt_networks="192.0.2.0/24")
    enrollment = daemon.enroll(user.name)
    as_user = {"as_uid": user.uid, "as_gid": user.gid}
    answer = daemon.request("check", {"user": user.name, "remoteHost": "192.0.2.9"}, **as_user)
    assert answer.status == "enrolled" and answer["rule"] == "enrolled", answer
    for _ in range(2):
        daemon.request("verify", {"user": user.name, "code": enrollment.codes.wrong_code(),
                                  "remoteHost": "198.51.100.66"}, **as_user)
    daemon.request("check", {"user": user.name, "remoteHost": "198.51.100.67", "phase": 3}, **as_user)
    assert "198.51.100.6" not in daemon.log() and "192.0.2.9" not in daemon.log(), daemon.log()
    hosts, report = fail2ban_regex(daemon.log().splitlines(), tmp_path)
    assert hosts == {}, report
    # root (sshd, the module) is believed
    assert daemon.request("check", {"user": user.name, "remoteHost": "192.0.2.9"}).status == "exempt"
