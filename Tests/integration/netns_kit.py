"""A fleet on one machine: network namespaces joined by a bridge, for the fleet tests
(test_fleet.py). Part of the test kit listed in helpers.py; no pytest needed.

  Fleet(nodes)        one namespace per node and one for the database, all on a private /24
                      behind a bridge inside the database namespace. Nothing is added to the
                      machine's own namespace: every veth is created straight into its
                      namespace. create() / destroy() (or a `with` block); a run that was killed
                      leaves namespaces named after its pid, which the next Fleet() removes.
  Fleet.run(ns, argv)     a command inside a namespace (ip netns exec)
  Fleet.connect(ns, host, port)   a TCP socket made inside a namespace (for paramiko)
  Fleet.prefix(ns)    the command prefix for programs in a namespace: helpers.Daemon.start(wrapper=),
                      ssh_kit.ThrowawaySshd(wrapper=), pg_kit.PostgresCluster(wrapper=)

Unix sockets are files, so the test process talks to every node's twofactord directly; only TCP
(sshd, PostgreSQL) lives in the namespaces.
"""
import ctypes
import os
import re
import secrets
import socket
import subprocess
import threading
import time

import helpers

PREFIX = "tffleet"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Removes the namespaces of fleets whose test process is gone (a killed run)."""
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}-(\d+)-[0-9a-f]+-\w+", name)
        if match and not _alive(int(match.group(1))):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", name, check=False)


class Fleet:
    def __init__(self, nodes=2):
        sweep_stale()
        tag = secrets.token_hex(3)
        base = f"{PREFIX}-{os.getpid()}-{tag}"
        self.db = f"{base}-db"
        self.nodes = [f"{base}-n{i + 1}" for i in range(nodes)]
        # 10.A.B.0/24: random, so two fleets at once do not meet (they never could: separate bridges).
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        self.db_address = f"{self.net}.1"
        self.addresses = {ns: f"{self.net}.{10 + i}" for i, ns in enumerate(self.nodes)}
        self._bridge = f"tfbr{tag}"
        self._created = []

    def create(self):
        helpers.register_cleanup(("fleet", self.db), self.destroy)
        try:
            for ns in [self.db, *self.nodes]:
                _ip("netns", "add", ns)
                self._created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.db, "link", "add", self._bridge, "type", "bridge")
            _ip("-n", self.db, "addr", "add", f"{self.db_address}/24", "dev", self._bridge)
            _ip("-n", self.db, "link", "set", self._bridge, "up")
            for i, ns in enumerate(self.nodes):
                # Each end is made in its namespace: the machine's own namespace never sees them.
                node_end, bridge_end = f"tfv{i}{self._bridge[4:]}", f"tfb{i}{self._bridge[4:]}"
                _ip("link", "add", node_end, "netns", ns, "type", "veth", "peer", "name", bridge_end,
                    "netns", self.db)
                _ip("-n", self.db, "link", "set", bridge_end, "master", self._bridge)
                _ip("-n", self.db, "link", "set", bridge_end, "up")
                _ip("-n", ns, "addr", "add", f"{self.addresses[ns]}/24", "dev", node_end)
                _ip("-n", ns, "link", "set", node_end, "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self):
        for ns in reversed(self._created):
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                # Only what is still running in our own namespaces: the kits stop theirs first.
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
        self._created = []
        helpers.done_cleanup(("fleet", self.db))

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.destroy()

    def prefix(self, ns):
        """The command prefix that runs a program inside `ns`."""
        return ("ip", "netns", "exec", ns)

    def run(self, ns, argv, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run([*self.prefix(ns), *argv], **kwargs)

    def connect(self, ns, host, port, timeout=10):
        """A TCP connection to host:port made from inside `ns`: a thread enters the namespace
        (setns is per thread), connects and leaves; the socket stays in the namespace."""
        result = {}

        def worker():
            try:
                fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns {ns}")
                finally:
                    os.close(fd)
                result["socket"] = socket.create_connection((host, port), timeout=timeout)
            except BaseException as error:
                result["error"] = error

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]
        return result["socket"]

    def wait_tcp(self, ns, host, port, timeout=20):
        deadline = time.time() + timeout
        while True:
            try:
                self.connect(ns, host, port, timeout=1).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
