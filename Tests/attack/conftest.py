"""Fixtures of the attack suite (races, crashes, full disk): the real twofactord from the
integration kit (Tests/integration/helpers.py) on a private socket and store.

TWOFACTORD / TWOFACTOR_CLI choose the binaries as in Tests/integration. TWOFACTOR_ATTACK_LONG=1
selects the long form (many repetitions and kills); TWOFACTOR_ATTACK_REPEAT and
TWOFACTOR_ATTACK_KILLS override the counts.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

from helpers import daemons  # noqa: E402  (the kit lives in Tests/integration)
from race_kit import ATTACK_CONFIG  # noqa: E402


@pytest.fixture
def race_daemon_factory(tmp_path_factory):
    yield from daemons(tmp_path_factory, ATTACK_CONFIG)


@pytest.fixture
def race_daemon(race_daemon_factory):
    return race_daemon_factory()


def pytest_terminal_summary(terminalreporter):
    """The figures each test recorded (races run, kills done), printed at the end of the run."""
    from figures import FIGURES
    if FIGURES:
        terminalreporter.section("attack figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
