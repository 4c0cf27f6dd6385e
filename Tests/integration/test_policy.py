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
    return [line for line in daemon.log().splitlines() if line.startswith(f"check account={account} ")]


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
    daemon = daemon_factory(audit_format="json", max_failures=2)
    enrollment = daemon.enroll(user.name)
    service = pam_service(stack(daemon))
    for _ in range(2):
        pamtester(service, user.name, [user.password, enrollment.codes.wrong_code()],
                  items={"rhost": "192.0.2.77", "tty": "pts/3"})
    crafted = 'x" rhost=203.0.113.9 \\ "'
    daemon.request("check", {"user": crafted, "remoteHost": "192.0.2.78"})
    events = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    assert all(isinstance(e, dict) and list(e)[:2] == ["time", "event"] for e in events), events
    verifies = [e for e in events if e["event"] == "verify"]
    assert list(verifies[0]) == ["time", "event", "account", "service", "rhost", "tty", "method", "result", "reason"]
    assert verifies[0] | {"time": None} == {"time": None, "event": "verify", "account": user.name, "service": service,
                                            "rhost": "192.0.2.77", "tty": "pts/3", "method": None,
                                            "result": "rejected", "reason": "wrong-code"}
    lockout = [e for e in events if e["event"] == "lockout"]
    assert lockout and list(lockout[0]) == ["time", "event", "account", "until", "failures", "rhost"]
    assert lockout[0]["rhost"] == "192.0.2.77" and lockout[0]["failures"] == 2
    unknown = [e for e in events if e["event"] == "check" and e["reason"] == "unknown-user"]
    assert unknown and unknown[0]["account"] == crafted and unknown[0]["rhost"] == "192.0.2.78", unknown
    assert list(unknown[0]) == ["time", "event", "account", "service", "rhost", "tty", "rule", "detail",
                                "result", "reason"]
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
    daemon.request("check", {"user": "evil rhost=203.0.113.9", "remoteHost": "192.0.2.53"})
    pamtester(service, user.name, [user.password, enrollment.codes.wrong_code()])  # no rhost (sudo)
    pamtester(service, user.name, [user.password], items={"rhost": "192.0.2.200"})  # exempt

    lines = daemon.log().splitlines()
    hosts, report = fail2ban_regex(lines, tmp_path)
    # 3 wrong codes + the lockout line; the unknown user; the crafted name with its real host.
    assert hosts == {"192.0.2.50": 4, "2001:db8::51": 1, "192.0.2.53": 1}, report
    assert "203.0.113.9" not in hosts and "192.0.2.200" not in hosts
