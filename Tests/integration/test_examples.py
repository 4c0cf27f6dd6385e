"""The shipped PAM stacks (pam.d/*.example), each installed as it is as a throwaway PAM service
and driven by pamtester against the real module and a private daemon.

Only the module's name is rewritten: `pam_twofactor.so` becomes the module under test
(helpers.PAM_MODULE) with socket=<the private daemon's socket>. Everything else, including
`@include common-auth` and pam_unix with its failure delay, runs as an administrator would
install it. The rule every stack must keep: it never succeeds on nothing (no input, empty
answers), for enrolled and unenrolled accounts alike.

TWOFACTOR_PAM_EXAMPLES names the directory of examples (default: this tree's pam.d; the
installed copies are in /usr/local/share/doc/twofactor/examples/pam.d).
"""
import os
import re

import pytest

from helpers import PAM_MODULE, pamtester, wrong_code

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES_DIR = os.environ.get("TWOFACTOR_PAM_EXAMPLES", os.path.join(ROOT, "pam.d"))
SUCCESS = "successfully authenticated"


class Stack:
    """What one example asks for, and what it promises an account without 2FA."""

    def __init__(self, answers, unenrolled):
        self.answers = answers        # (password, code) -> the replies, in prompt order
        self.unenrolled = unenrolled  # "password": logs in with the password alone; "refused"
        self.has_password = answers("P", "C") != answers("", "C")


STACKS = {
    # password prompt (common-auth), then the code prompt
    "sshd-twofactor.example": Stack(lambda pw, code: [pw, code], unenrolled="password"),
    "sudo-twofactor.example": Stack(lambda pw, code: [pw, code], unenrolled="password"),
    # the same with enrollment at login (only when the daemon's policy requires it)
    "sshd-enroll-at-login.example": Stack(lambda pw, code: [pw, code], unenrolled="password"),
    # one prompt, password immediately followed by the code (forward_pass)
    "sshd-one-prompt.example": Stack(lambda pw, code: [pw + code], unenrolled="password"),
    # sshd checked the key already; the stack asks only for the code
    "sshd-key-and-code.example": Stack(lambda pw, code: [code], unenrolled="refused"),
}


def shipped_examples():
    return sorted(name for name in os.listdir(EXAMPLES_DIR) if name.endswith(".example"))


def example_lines(name, socket):
    """The example's lines with pam_twofactor.so pointed at the module under test."""
    with open(os.path.join(EXAMPLES_DIR, name)) as f:
        lines = f.read().splitlines()
    rewritten, count = [], 0
    for line in lines:
        if not line.lstrip().startswith("#"):
            line, n = re.subn(r"(?<![\w/.-])pam_twofactor\.so(?![\w.])",
                              f"{PAM_MODULE} socket={socket}", line)
            count += n
        rewritten.append(line)
    assert count >= 1, f"{name} does not use pam_twofactor.so"
    return rewritten


def authenticates(service, user, answers):
    result = pamtester(service, user.name, answers, timeout=60)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    # pamtester exits 0 or 1; anything else (a signal) means the module crashed it.
    assert result.returncode in (0, 1), f"pamtester died: {result.returncode}\n{output}"
    assert (result.returncode == 0) == (SUCCESS in output), output
    return result.returncode == 0, output


# Nothing at all (the conversation reaches end of input) and empty answers to every prompt.
NOTHING = [[], ["", "", ""]]


@pytest.fixture(params=sorted(STACKS))
def example(request, daemon, pam_service):
    """(file name, its Stack, the name of the throwaway PAM service holding it)."""
    name = request.param
    if not os.path.exists(os.path.join(EXAMPLES_DIR, name)):
        pytest.fail(f"{name} is not shipped in {EXAMPLES_DIR}")
    return name, STACKS[name], pam_service(example_lines(name, daemon.socket), prefix="tfex")


def test_every_shipped_example_is_tested():
    assert set(shipped_examples()) == set(STACKS), (
        "each pam.d/*.example needs an entry in STACKS (and so these tests)")


def test_enrolled_with_the_right_code_logs_in(example, daemon, user):
    name, stack, service = example
    enrolled = daemon.enroll(user.name)
    ok, output = authenticates(service, user, stack.answers(user.password, enrolled.code(1)))
    assert ok, f"{name}: {output}"


def test_enrolled_with_a_wrong_code_is_refused(example, daemon, user):
    name, stack, service = example
    enrolled = daemon.enroll(user.name)
    ok, output = authenticates(service, user,
                               stack.answers(user.password, wrong_code(enrolled.secret)))
    assert not ok, f"{name}: {output}"


def test_enrolled_with_the_right_code_and_a_wrong_password_is_refused(example, daemon, user):
    name, stack, service = example
    if not stack.has_password:
        pytest.skip(f"{name} asks for no password")
    enrolled = daemon.enroll(user.name)
    ok, output = authenticates(service, user, stack.answers("not-" + user.password, enrolled.code(1)))
    assert not ok, f"{name}: {output}"


@pytest.mark.parametrize("answers", NOTHING, ids=["no-input", "empty-answers"])
def test_enrolled_with_nothing_is_refused(example, daemon, user, answers):
    name, _, service = example
    daemon.enroll(user.name)
    ok, output = authenticates(service, user, answers)
    assert not ok, f"{name}: {output}"


@pytest.mark.parametrize("answers", NOTHING, ids=["no-input", "empty-answers"])
def test_unenrolled_with_nothing_is_refused(example, user, answers):
    name, _, service = example
    ok, output = authenticates(service, user, answers)
    assert not ok, f"{name} let an account without 2FA in on nothing: {output}"


def test_unenrolled_gets_what_the_example_documents(example, user):
    name, stack, service = example
    if stack.unenrolled == "password":
        # No code prompt: the password alone, checked by pam_unix, and only the right one.
        wrong, output = authenticates(service, user, ["not-" + user.password])
        assert not wrong, f"{name}: {output}"
        ok, output = authenticates(service, user, [user.password])
        assert ok, f"{name}: {output}"
    else:
        # Refused whatever is typed: nothing in the stack can vouch for this account.
        for answers in ([user.password], ["123456"], [user.password, "123456"]):
            ok, output = authenticates(service, user, answers)
            assert not ok, f"{name} let an account without 2FA in: {output}"
        assert "Two-factor authentication is required" in output, output


def test_key_and_code_stack_refuses_everyone_while_the_daemon_is_down(daemon, user, pam_service):
    """The key+code stack has no password to fall back on: with the daemon gone, even
    failmode=open (which makes the module ignore itself) must not let anyone in."""
    name = "sshd-key-and-code.example"
    lines = [line.replace(f"socket={daemon.socket}", f"socket={daemon.socket} failmode=open")
             for line in example_lines(name, daemon.socket)]
    service = pam_service(lines, prefix="tfex")
    enrolled = daemon.enroll(user.name)
    daemon.stop()
    for answers in ([enrolled.code(1)], [], [""]):
        ok, output = authenticates(service, user, answers)
        assert not ok, f"{name} with failmode=open and no daemon: {output}"
