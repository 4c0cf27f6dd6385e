"""sudo through the installed pam_twofactor.so and the installed, running twofactord, for a
throwaway user given its own PAM service by a throwaway /etc/sudoers.d file. See e2e.py."""
import pytest

from e2e import AuditLog, PROTECTED_FILES, root_sudo_works, sha256_of, sudo_as
from helpers import CODE_PROMPT, WRONG_CODE_MESSAGE

pytestmark = pytest.mark.usefixtures("e2e_system_guard")


def test_sudo_with_password_and_right_code_runs_the_command(e2e_users, sudo_grant):
    user = e2e_users()
    sudo_grant(user.name)
    result = sudo_as(user.name, user.password, user.enrollment.codes.next_code())
    assert result.prompts == [f"[sudo] password for {user.name}: ", CODE_PROMPT], result
    assert result.exit_status == 0, result
    assert result.printed_line("0"), result


def test_sudo_with_wrong_code_is_refused(e2e_users, sudo_grant, installed_daemon):
    # sudo 1.9.13 always calls pam_authenticate with PAM_SILENT; the module still tells the
    # person why, and the daemon's failure count shows the code was judged.
    user = e2e_users()
    sudo_grant(user.name)
    result = sudo_as(user.name, user.password, user.enrollment.codes.wrong_code())
    assert result.prompts == [f"[sudo] password for {user.name}: ", CODE_PROMPT], result
    assert result.exit_status != 0, result
    assert not result.printed_line("0"), result
    assert WRONG_CODE_MESSAGE in result.transcript, result
    assert "1 incorrect password attempt" in result.transcript, result
    assert installed_daemon.status(user.name)["failures"] == 1


def test_sudo_verification_is_audited_with_its_service_and_tty(e2e_users, sudo_grant):
    audit = AuditLog()
    user = e2e_users()
    grant = sudo_grant(user.name)
    code = user.enrollment.codes.next_code()
    assert sudo_as(user.name, user.password, code).printed_line("0")
    line = audit.wait_for("verify", f"account={user.name}", f"service={grant.name}",
                          "method=totp", "result=accepted", "reason=ok")
    assert " tty=/dev/pts/" in line, line
    assert code not in line and user.password not in line, line


def test_sudo_reused_code_is_refused(e2e_users, sudo_grant, installed_daemon):
    user = e2e_users()
    sudo_grant(user.name)
    code = user.enrollment.codes.next_code()
    first = sudo_as(user.name, user.password, code)
    assert first.exit_status == 0 and first.printed_line("0"), first
    replay = sudo_as(user.name, user.password, code)
    assert replay.prompts == [f"[sudo] password for {user.name}: ", CODE_PROMPT], replay
    assert replay.exit_status != 0 and not replay.printed_line("0"), replay
    assert "1 incorrect password attempt" in replay.transcript, replay
    assert installed_daemon.status(user.name)["failures"] == 1


def test_sudo_user_without_2fa_is_asked_only_the_password(e2e_users, sudo_grant):
    user = e2e_users(enrolled=False)
    sudo_grant(user.name)
    result = sudo_as(user.name, user.password)
    assert result.prompts == [f"[sudo] password for {user.name}: "], result
    assert result.exit_status == 0 and result.printed_line("0"), result


def test_sudo_require_refuses_user_without_2fa(e2e_users, sudo_grant):
    user = e2e_users(enrolled=False)
    sudo_grant(user.name, ["require"])
    result = sudo_as(user.name, user.password)
    assert result.exit_status != 0 and not result.printed_line("0"), result


def test_root_sudo_is_untouched_while_a_grant_is_installed(e2e_users, sudo_grant):
    user = e2e_users()
    sudo_grant(user.name)
    for done in root_sudo_works():
        assert done.returncode == 0, f"{done.args}: {done.returncode} {done.stderr}"
        assert done.stderr == "", f"{done.args} said: {done.stderr}"


def test_system_sshd_and_sudo_configuration_unchanged_so_far(e2e_system_guard):
    # The session guard checks again after the very last test; this names the files in a test.
    for path in PROTECTED_FILES:
        assert sha256_of(path) == e2e_system_guard.hashes[path], f"{path} changed"
    assert e2e_system_guard.problems(at_end=False) == []
