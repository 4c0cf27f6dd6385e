"""Shared fixtures for the integration tests: the real twofactord binary on a temporary socket
and store, throwaway Unix users, throwaway PAM services, fake NTP servers, and independent TOTP
codes (oathtool). The building blocks behind them, and the list of everything in the test kit,
are in helpers.py.

Paths come from the environment so the same tests run against a debug build or the installed
product (the default, and what .ci/run uses):
  TWOFACTORD            the daemon binary    (default /usr/local/sbin/twofactord)
  TWOFACTOR_CLI         the command line     (default /usr/local/bin/twofactor)
  TWOFACTOR_PAM_MODULE  the PAM module       (default /usr/lib/x86_64-linux-gnu/security/pam_twofactor.so)
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fake_ntp_server import FakeNTPServer  # noqa: E402  (the kit lives beside this file)
from helpers import (  # noqa: E402
    ThrowawayUser, PamService, daemons, factory, unique_name,
)


@pytest.fixture
def daemon_factory(tmp_path_factory):
    """Starts daemons with config overrides: daemon_factory(window=2, max_failures=3)."""
    yield from daemons(tmp_path_factory)


@pytest.fixture
def daemon(daemon_factory):
    """A running twofactord with NTP off, logging to stderr, on a private socket and store."""
    return daemon_factory()


@pytest.fixture
def user():
    """A throwaway Unix user with a home directory and a random password, removed afterwards."""
    u = ThrowawayUser()
    try:
        yield u
    finally:
        u.remove()


@pytest.fixture
def make_user():
    """make_user(prefix=..., groups=(...), uid=...) -> more throwaway users (helpers.ThrowawayUser)."""
    yield from factory(ThrowawayUser, ThrowawayUser.remove)


@pytest.fixture
def pam_service():
    """pam_service(lines) writes /etc/pam.d/<unique lowercase name> and returns the name."""
    def make(lines, prefix="tftest"):
        return PamService(unique_name(prefix), lines)

    yield from factory(make, PamService.remove, give=lambda service: service.name)


@pytest.fixture
def fake_ntp():
    """fake_ntp(skew=..., behaviour=...) -> a FakeNTPServer on 127.0.0.1 (fake_ntp_server.py)."""
    yield from factory(FakeNTPServer, FakeNTPServer.close)


# ---- End-to-end tests through real sshd and sudo (test_sshd.py, test_sudo.py) ----------------
# Owned by the e2e helper; the fixtures live in e2e.py: installed_daemon (the installed, running
# twofactord; fails if it does not answer), e2e_system_guard, e2e_users, sshd_default,
# sshd_require, openssh_client, sudo_grant.
from e2e import (  # noqa: E402,F401  (fixtures are found by name in conftest's namespace)
    e2e_system_guard, e2e_users, installed_daemon, openssh_client, sshd_default, sshd_require,
    sudo_grant,
)
