"""Logins through a real OpenSSH server (a throwaway sshd with its own PAM service) with the
installed pam_twofactor.so and the installed, running twofactord. See e2e.py."""
import pytest

import twofactor_wire as wire
from e2e import AuditLog, ThrowawaySshd
from helpers import CODE_PROMPT, WRONG_CODE_MESSAGE
from ssh_kit import paramiko_login

pytestmark = pytest.mark.usefixtures("e2e_system_guard")

CLIENTS = ["paramiko", "openssh"]


@pytest.fixture
def login(request, openssh_client):
    """login(sshd, user, code=None, password=None) with the test's client (paramiko/openssh)."""
    client = request.param if hasattr(request, "param") else "paramiko"

    def run(server, user, code=None, password=None, command="id -un"):
        password = user.password if password is None else password
        if client == "paramiko":
            return paramiko_login(server.port, user.name, password, code, command)
        return openssh_client.login(server.port, user.name, password, code, command)

    return run


UNREACHABLE_SOCKET = "socket=/nonexistent/twofactord.sock"


@pytest.fixture(scope="module")
def sshd_daemon_unreachable(installed_daemon):
    """A throwaway sshd whose module cannot reach any daemon (default failmode: secure)."""
    with ThrowawaySshd([UNREACHABLE_SOCKET]) as server:
        yield server


@pytest.fixture(scope="module")
def sshd_daemon_unreachable_failmode_open(installed_daemon):
    with ThrowawaySshd([UNREACHABLE_SOCKET, "failmode=open"]) as server:
        yield server


def assert_logged_in(result, user):
    assert result.authenticated, result
    assert result.exit_status == 0, result
    assert result.output.strip() == user.name, result


def assert_refused(result):
    assert not result.authenticated, result
    assert result.output == "", result


def assert_asked_password_then_code(result):
    assert len(result.prompts) == 2, result
    assert "password" in result.prompts[0].lower(), result
    assert result.prompts[1].endswith(CODE_PROMPT), result


def shown_wrong_code_message(result):
    return any(WRONG_CODE_MESSAGE in text for text in result.messages)


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_enrolled_user_logs_in_with_password_and_code(login, sshd_default, e2e_users):
    user = e2e_users()
    result = login(sshd_default, user, user.enrollment.codes.next_code())
    assert_logged_in(result, user)
    assert_asked_password_then_code(result)


def test_sshd_user_who_enrolled_with_the_cli_logs_in(login, sshd_default, e2e_users):
    user = e2e_users(enrolled="cli")
    result = login(sshd_default, user, user.enrollment.codes.next_code())
    assert_logged_in(result, user)
    assert_asked_password_then_code(result)


def test_sshd_login_and_refusal_are_audited_with_service_and_remote_host(
        login, sshd_default, e2e_users):
    audit = AuditLog()
    user = e2e_users()
    code = user.enrollment.codes.next_code()
    assert_logged_in(login(sshd_default, user, code), user)
    accepted = audit.wait_for("verify", f"account={user.name}", f"service={sshd_default.service}",
                              "rhost=127.0.0.1", "method=totp", "result=accepted", "reason=ok")
    wrong = user.enrollment.codes.wrong_code()
    assert_refused(login(sshd_default, user, wrong))
    rejected = audit.wait_for("verify", f"account={user.name}", f"service={sshd_default.service}",
                              "rhost=127.0.0.1", "result=rejected", "reason=wrong-code")
    for line in audit.new_lines():  # never a code or a password in the log
        assert code not in line and wrong not in line and user.password not in line, line
    assert accepted != rejected


def test_sshd_new_account_on_a_just_reused_uid_enrolls_with_the_cli_and_logs_in(
        login, sshd_default, e2e_users, installed_daemon):
    # A provisioning script deletes an account and creates another that gets the same uid; the
    # newcomer enrolls at once. The daemon must name the caller by the uid's current owner.
    former = e2e_users(enrolled=False)
    primed = wire.request(installed_daemon.socket, "status", {"user": former.name},
                          as_uid=former.uid, as_gid=former.gid)
    assert primed.status == "ok", primed
    former.remove()
    newcomer = e2e_users(enrolled=False, uid=former.uid)
    as_newcomer = {"as_uid": newcomer.uid, "as_gid": newcomer.gid}
    stale = wire.request(installed_daemon.socket, "status", {"user": former.name}, **as_newcomer)
    assert stale.status == "permissionDenied", f"the new owner of uid {newcomer.uid} may act as the deleted {former.name}: {stale!r}"
    newcomer.enrollment = installed_daemon.enroll_with_cli(newcomer.name)
    assert_logged_in(login(sshd_default, newcomer, newcomer.enrollment.codes.next_code()), newcomer)


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_wrong_code_is_refused_with_message(login, sshd_default, e2e_users,
                                                 installed_daemon):
    user = e2e_users()
    result = login(sshd_default, user, user.enrollment.codes.wrong_code())
    assert_refused(result)
    assert_asked_password_then_code(result)
    assert shown_wrong_code_message(result), result
    assert installed_daemon.status(user.name)["failures"] == 1


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_reused_code_is_refused(login, sshd_default, e2e_users):
    user = e2e_users()
    code = user.enrollment.codes.next_code()
    assert_logged_in(login(sshd_default, user, code), user)
    replay = login(sshd_default, user, code)
    assert_refused(replay)
    assert_asked_password_then_code(replay)
    assert shown_wrong_code_message(replay), replay


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_recovery_code_logs_in_once(login, sshd_default, e2e_users, installed_daemon):
    user = e2e_users()
    recovery = user.enrollment.recovery_codes[3]
    assert_logged_in(login(sshd_default, user, recovery), user)
    assert installed_daemon.status(user.name)["recoveryCodesLeft"] == 7
    second = login(sshd_default, user, recovery)
    assert_refused(second)
    assert shown_wrong_code_message(second), second
    assert installed_daemon.status(user.name)["recoveryCodesLeft"] == 7


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_wrong_password_with_right_code_is_refused(login, sshd_default, e2e_users):
    user = e2e_users()
    result = login(sshd_default, user, user.enrollment.codes.next_code(),
                   password=user.password + "x")
    assert_refused(result)


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_user_without_2fa_is_asked_only_the_password(login, sshd_default, e2e_users):
    user = e2e_users(enrolled=False)
    result = login(sshd_default, user)
    assert_logged_in(result, user)
    assert len(result.prompts) == 1 and "password" in result.prompts[0].lower(), result
    assert not result.asked_for_code(), result


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_require_refuses_user_without_2fa(login, sshd_require, e2e_users):
    user = e2e_users(enrolled=False)
    assert_refused(login(sshd_require, user))


def test_sshd_require_still_lets_enrolled_user_in(login, sshd_require, e2e_users):
    user = e2e_users()
    result = login(sshd_require, user, user.enrollment.codes.next_code())
    assert_logged_in(result, user)
    assert_asked_password_then_code(result)


@pytest.mark.parametrize("login", CLIENTS, indirect=True)
def test_sshd_refuses_everyone_when_the_daemon_is_unreachable(login, sshd_daemon_unreachable,
                                                             e2e_users):
    user = e2e_users()
    result = login(sshd_daemon_unreachable, user, user.enrollment.codes.next_code())
    assert_refused(result)
    assert not result.asked_for_code(), result
    assert any("Two-factor authentication is unavailable" in text for text in result.messages), result


def test_sshd_failmode_open_lets_the_password_through_when_the_daemon_is_unreachable(
        login, sshd_daemon_unreachable_failmode_open, e2e_users):
    user = e2e_users()
    result = login(sshd_daemon_unreachable_failmode_open, user)
    assert_logged_in(result, user)
    assert not result.asked_for_code(), result


def test_sshd_lockout_after_wrong_codes_until_admin_unlock(login, sshd_default, e2e_users,
                                                           installed_daemon):
    user = e2e_users()
    codes = user.enrollment.codes
    for attempt in range(installed_daemon.max_failures):
        assert_refused(login(sshd_default, user, codes.wrong_code()))
    status = installed_daemon.status(user.name)
    assert status.get("lockedUntil"), f"not locked after {installed_daemon.max_failures} wrong codes: {status!r}"

    # A right code is refused while locked (without being checked, so it is not used up).
    right = codes.next_code()
    locked = login(sshd_default, user, right)
    assert_refused(locked)
    assert any("Too many incorrect codes" in text for text in locked.messages), locked

    installed_daemon.admin_unlock(user.name)
    status = installed_daemon.status(user.name)
    assert not status.get("lockedUntil") and status["failures"] == 0, status
    assert_logged_in(login(sshd_default, user, codes.next_code()), user)
