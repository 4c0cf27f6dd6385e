"""A fleet on one machine (issue 14): three nodes, each a network namespace running its own
twofactord (the real binary) and its own sshd, sharing one PostgreSQL store that runs in a fourth
namespace, reached over TLS (verify-full) with password authentication. The key file is copied
to every node, as an administrator distributes it. What one node does holds on the others:
an enrollment, a spent recovery code, a lockout, and a code raced from 100 clients at once.

The kits: netns_kit.Fleet (namespaces), pg_kit.PostgresCluster (the database), ssh_kit
(ThrowawaySshd, paramiko_login), helpers (Daemon, ThrowawayUser, oathtool codes)."""
import os
import shutil
import subprocess
import threading

import pytest

import helpers
import netns_kit
import ssh_kit
import twofactor_wire as wire
from helpers import CLI_ENV, TWOFACTOR_CLI, Daemon, ThrowawayUser, unique_name

pg_kit = pytest.importorskip("pg_kit", reason="the PostgreSQL store's kit (branch pgstore14) is not here")

NODES = 3
MAX_FAILURES = 3


class Node:
    def __init__(self, name, ns, address, daemon, sshd):
        self.name, self.ns, self.address, self.daemon, self.sshd = name, ns, address, daemon, sshd

    def request(self, op, fields=()):
        return self.daemon.request(op, fields)

    def verify(self, user, code):
        return self.request("verify", {"user": user, "code": code, "service": "fleet"})


@pytest.fixture(scope="module")
def fleet():
    if os.geteuid() != 0 or not pg_kit.available() or shutil.which("ip") is None:
        pytest.skip("needs root, iproute2 and Debian's postgresql package")
    made = []  # undone in reverse order, whatever fails
    try:
        net = netns_kit.Fleet(NODES).create()
        made.append(net.destroy)
        pg = pg_kit.PostgresCluster(tls=True, host=net.db_address, port=5432, clients=f"{net.net}.0/24",
                                    wrapper=net.prefix(net.db))
        made.append(pg.destroy)
        database = pg.create_database()
        users = []
        made.append(lambda: [u.remove() for u in users])
        nodes = []
        key = None
        for i, ns in enumerate(net.nodes):
            name = f"node{i + 1}"
            d = Daemon(None, {**pg.daemon_config(database), "node_name": name, "max_failures": MAX_FAILURES})
            made.append(d.destroy)
            if key is not None:  # every node gets a copy of the first node's key file
                with open(d.key_file, "wb") as f:
                    f.write(key)
                os.chmod(d.key_file, 0o600)
            d.start(timeout=60, wrapper=net.prefix(ns))
            if key is None:
                with open(d.key_file, "rb") as f:
                    key = f.read()
            sshd = ssh_kit.ThrowawaySshd(ssh_kit.pam_lines([f"socket={d.socket}"]), allow_users="tffl*",
                                         prefix="tffl", host=net.addresses[ns], port=22,
                                         wrapper=net.prefix(ns), comment="the fleet tests")
            made.append(sshd.destroy)
            sshd.start()
            nodes.append(Node(name, ns, net.addresses[ns], d, sshd))
        yield {"net": net, "pg": pg, "database": database, "nodes": nodes, "users": users}
    finally:
        errors = []
        for undo in reversed(made):
            try:
                undo()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


def new_user(fleet):
    user = ThrowawayUser(prefix="tffl")
    fleet["users"].append(user)
    return user


def ssh_login(fleet, node, user, code):
    """keyboard-interactive over SSH to `node`'s sshd, from the database's namespace."""
    sock = fleet["net"].connect(fleet["net"].db, node.address, 22)
    return ssh_kit.paramiko_login(22, user.name, user.password, code, sock=sock)


def test_enroll_on_node1_and_log_in_over_ssh_on_node2(fleet):
    node1, node2, node3 = fleet["nodes"]
    user = new_user(fleet)
    e = helpers.enroll(node1.request, user.name)
    code = e.codes.next_code()
    result = ssh_login(fleet, node2, user, code)
    assert result.authenticated and result.output.strip() == user.name, (result, node2.sshd.log()[-2000:])
    # The same code, spent on node 2, is a replay on node 3.
    assert node3.verify(user.name, code).status == "codeReused"
    assert f"verify account={user.name} service=sshd-" in node2.daemon.log()
    assert "node=node2" in node2.daemon.log() and "node=node1" not in node2.daemon.log()


def test_a_recovery_code_used_on_node2_is_refused_on_node1(fleet):
    node1, node2, _ = fleet["nodes"]
    user = new_user(fleet)
    e = helpers.enroll(node1.request, user.name)
    recovery = e.recovery_codes[0]
    assert node2.verify(user.name, recovery).status == "accepted"
    assert node1.verify(user.name, recovery).status == "codeReused"
    assert node1.verify(user.name, e.recovery_codes[1]).status == "accepted"


def test_a_lockout_earned_on_node1_holds_on_node2(fleet):
    node1, node2, node3 = fleet["nodes"]
    user = new_user(fleet)
    e = helpers.enroll(node3.request, user.name)
    for _ in range(MAX_FAILURES):
        assert node1.verify(user.name, e.codes.wrong_code()).status == "wrongCode"
    code = e.codes.next_code()
    answer = node2.verify(user.name, code)
    assert answer.status == "lockedOut" and answer.get("lockedUntil"), answer
    # Refused unchecked while locked, so the same (right) code fails over SSH on node 2 too.
    result = ssh_login(fleet, node2, user, code)
    assert not result.authenticated and result.asked_for_code(), result
    status = node3.request("status", {"user": user.name})
    assert status["failures"] >= MAX_FAILURES and status.get("lockedUntil"), status


def test_one_code_raced_from_100_clients_across_the_nodes_is_accepted_once(fleet):
    nodes = fleet["nodes"]
    user = unique_name("tffr")  # the daemon verifies for any name when root asks
    e = helpers.enroll(nodes[0].request, user)
    code = e.codes.next_code()
    start = threading.Barrier(100)
    answers = [None] * 100

    def race(i):
        node = nodes[i % len(nodes)]
        start.wait()
        try:
            answers[i] = wire.request(node.daemon.socket, "verify", {"user": user, "code": code}, timeout=30).status
        except Exception as error:
            answers[i] = repr(error)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers.count("accepted") == 1, answers
    # Every other one is refused: as a replay, and once the replays count up to max_failures,
    # as locked out (a replay is a failure too). No error, no second acceptance.
    assert all(a in ("codeReused", "lockedOut") for a in answers if a != "accepted"), answers
    assert "codeReused" in answers


def test_admin_health_follows_the_database(fleet):
    node = fleet["nodes"][0]
    pg = fleet["pg"]

    def health():
        return subprocess.run([TWOFACTOR_CLI, "admin", "health", "--json", "--socket", node.daemon.socket],
                              capture_output=True, text=True, env=CLI_ENV, timeout=30)

    import json
    up = health()
    assert up.returncode == 0, up.stderr
    first = json.loads(up.stdout)
    assert first["store_kind"] == "postgresql" and first["store_reachable"] is True
    assert first["node"] == "node1" and pg.password not in up.stdout
    pg.stop()
    try:
        down = health()
        assert down.returncode == 1, (down.stdout, down.stderr)
        report = json.loads(down.stdout)
        assert report["store_reachable"] is False and report["store_last_error"], report
        assert pg.password not in down.stdout
    finally:
        pg.start()
    for _ in range(50):  # the store reconnects by itself
        again = health()
        if again.returncode == 0:
            break
    assert json.loads(again.stdout)["store_reachable"] is True, again.stdout
