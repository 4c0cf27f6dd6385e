"""A private PostgreSQL cluster for the tests (Debian's `postgresql` package): initdb as the
`postgres` system user into a temporary directory, pg_ctl on a free port on 127.0.0.1 (or another
address given), optional TLS with certificates made by openssl, removed again on every exit path
(context manager, pytest fixture, and helpers.register_cleanup at interpreter exit).

    from pg_kit import PostgresCluster
    with PostgresCluster(tls=True) as pg:            # started; stopped and deleted afterwards
        db = pg.create_database()                    # a fresh database owned by pg.ROLE
        d = Daemon(workdir, pg.daemon_config(db))    # postgres_* keys + a 0600 password file
        pg.terminate_backends()                      # pg_terminate_backend(twofactord sessions)
        pg.stop(); pg.start()                        # the server goes away and comes back
        pg.pause(); pg.resume()                      # the server hangs (SIGSTOP) and wakes up
        pg.psql("SELECT ...", db)                    # as the superuser, over the Unix socket

Roles: `postgres` (superuser; the Unix socket, and 127.0.0.1 with `trust`, for the tests' own
set-up only), PostgresCluster.ROLE (`twofactord`, password authentication with scram-sha-256;
the password is in pg.password_file, mode 0600), and CERT_ROLE (`twofactord_cert`, client
certificate authentication only, over TLS).

Pytest: the fixtures `pg_cluster` (plain) and `pg_cluster_tls` (TLS) live here; import them into
a test module (`from pg_kit import pg_cluster`) to use them. Each is one cluster per module.

Command line (scripts/test-all uses it for the Swift store tests):
    python3 Tests/integration/pg_kit.py run -- COMMAND ARGS...
runs COMMAND with TWOFACTOR_TEST_POSTGRES_URL set to the superuser's URL of a fresh cluster, then
removes the cluster; exits with COMMAND's status.
"""
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import done_cleanup, free_port, register_cleanup  # noqa: E402

SYSTEM_USER = "postgres"


def bin_dir():
    """The newest installed server's binaries (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL server not installed (Debian package `postgresql`)")
    return os.path.dirname(found[-1])


def available():
    try:
        bin_dir()
        pwd.getpwnam(SYSTEM_USER)
        return True
    except (RuntimeError, KeyError):
        return False


def _as_postgres(args, wrapper=(), **kwargs):
    return subprocess.run([*wrapper, "runuser", "-u", SYSTEM_USER, "--", *args], capture_output=True, text=True,
                          **kwargs)


class PostgresCluster:
    ROLE = "twofactord"
    CERT_ROLE = "twofactord_cert"

    def __init__(self, tls=False, host="127.0.0.1", port=None, clients=None, wrapper=()):
        """`host`: the address to listen on (and the name in the server certificate);
        `clients`: the CIDR allowed to log in over TCP (default: `host` alone); `wrapper`: a
        command prefix for the server and psql, e.g. ("ip", "netns", "exec", "tfdb") to run the
        server inside a network namespace of the test's own."""
        self.tls = tls
        self.host = host
        self.clients = clients or f"{host}/32"
        self.wrapper = tuple(wrapper)
        self.port = port or free_port()
        self.bin = bin_dir()
        self.dir = tempfile.mkdtemp(prefix="tfpg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.socket_dir = os.path.join(self.dir, "socket")
        self.certs = os.path.join(self.dir, "certs")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.password = secrets.token_urlsafe(24)
        self.password_file = os.path.join(self.dir, "password")
        self.running = False
        self._cleanup_key = f"pg-cluster-{self.dir}"
        register_cleanup(self._cleanup_key, self.destroy)
        try:
            self._init()
        except BaseException:
            self.destroy()
            raise

    # --- lifecycle --------------------------------------------------------------------------

    def _init(self):
        pg = pwd.getpwnam(SYSTEM_USER)
        for d in (self.socket_dir,):
            os.makedirs(d, mode=0o755)
            os.chown(d, pg.pw_uid, pg.pw_gid)
        os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        r = _as_postgres(wrapper=self.wrapper, args=[f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        settings = [
            f"listen_addresses = '{self.host}'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "fsync = on", "synchronous_commit = on",
            "max_connections = 60",
            "shared_buffers = 16MB",
            "deadlock_timeout = 200ms",
            "log_min_messages = warning",
        ]
        hba = ["local all all trust",
               # The tests' own set-up (and the Swift store tests) as the superuser.
               f"host all postgres {self.clients} trust"]
        if self.tls:
            self._make_certs(pg)
            settings += ["ssl = on",
                         f"ssl_cert_file = '{self.certs}/server.crt'",
                         f"ssl_key_file = '{self.certs}/server.key'",
                         f"ssl_ca_file = '{self.certs}/ca.crt'"]
            hba += [f"hostssl all {self.CERT_ROLE} {self.clients} cert",
                    f"hostssl all all {self.clients} scram-sha-256"]
        else:
            hba += [f"host all all {self.clients} scram-sha-256"]
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("\n".join(settings) + "\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("\n".join(hba) + "\n")
        os.chown(os.path.join(self.data, "pg_hba.conf"), pg.pw_uid, pg.pw_gid)
        with open(self.password_file, "w") as f:
            f.write(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        self.start()
        self.psql(f"CREATE ROLE {self.ROLE} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE ROLE {self.CERT_ROLE} LOGIN")

    def _make_certs(self, pg):
        """A CA, a server certificate for 127.0.0.1/localhost, a client certificate for
        CERT_ROLE, and a second, unrelated CA (the "wrong CA" of the tests)."""
        os.makedirs(self.certs, mode=0o755)
        c = self.certs

        def openssl(*args):
            r = subprocess.run(["openssl", *args], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"openssl {' '.join(args)}:\n{r.stderr}")

        for ca in ("ca", "wrong-ca"):
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=twofactor test {ca}",
                    "-keyout", f"{c}/{ca}.key", "-out", f"{c}/{ca}.crt")
        ext = f"{c}/server.ext"
        with open(ext, "w") as f:
            f.write(f"subjectAltName = IP:{self.host},DNS:localhost\n")
        for name, subject, extra in (("server", "/CN=localhost", ["-extfile", ext]),
                                     ("client", f"/CN={self.CERT_ROLE}", [])):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                    "-keyout", f"{c}/{name}.key", "-out", f"{c}/{name}.csr")
            openssl("x509", "-req", "-in", f"{c}/{name}.csr", "-CA", f"{c}/ca.crt", "-CAkey", f"{c}/ca.key",
                    "-CAcreateserial", "-days", "2", "-out", f"{c}/{name}.crt", *extra)
        for name in os.listdir(c):
            os.chmod(os.path.join(c, name), 0o644)
        os.chmod(f"{c}/server.key", 0o600)
        os.chown(f"{c}/server.key", pg.pw_uid, pg.pw_gid)
        os.chmod(f"{c}/client.key", 0o600)

    def start(self, timeout=60):
        r = _as_postgres([f"{self.bin}/pg_ctl", "-D", self.data, "-l", self.log_path, "-w", "-t", str(timeout),
                          "start"], wrapper=self.wrapper, timeout=timeout + 10)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{self.log()}")
        self.running = True

    def stop(self, mode="fast", timeout=60):
        if not self.running:
            return
        _as_postgres([f"{self.bin}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", str(timeout), "stop"],
                     wrapper=self.wrapper, timeout=timeout + 10)
        self.running = False

    def _server_pids(self):
        """The postmaster and its children (backends, checkpointer, ...)."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                master = int(f.readline())
        except (OSError, ValueError):
            return []
        pids = [master]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                            pids.append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        return pids

    def pause(self):
        """SIGSTOP to every server process: connections stay open, nothing answers (a hung
        server or a network that drops packets). resume() undoes it; destroy() does too."""
        for pid in self._server_pids():
            os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        for pid in self._server_pids():
            os.kill(pid, signal.SIGCONT)
        self.paused = False

    def destroy(self):
        """Stops the server (immediately if it will not stop) and deletes everything."""
        if getattr(self, "paused", False):
            self.resume()
        try:
            self.stop()
        except Exception:
            pass
        pid_file = os.path.join(self.data, "postmaster.pid")
        if os.path.exists(pid_file):
            try:
                with open(pid_file) as f:
                    os.kill(int(f.readline()), signal.SIGQUIT)
                time.sleep(0.5)
            except (OSError, ValueError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        done_cleanup(self._cleanup_key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # --- using it ---------------------------------------------------------------------------

    def psql(self, sql, database="postgres"):
        """Runs `sql` as the superuser over the Unix socket; returns the output rows (|-separated)."""
        r = _as_postgres(["psql", "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres", "-d", database,
                          "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql], wrapper=self.wrapper, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr}")
        return [line for line in r.stdout.splitlines() if line]

    def create_database(self, name=None, owner=None):
        """A fresh database owned by ROLE (which may then create the daemon's tables in it)."""
        name = name or "tf_" + secrets.token_hex(6)
        owner = owner or self.ROLE
        self.psql(f'CREATE DATABASE "{name}" OWNER {owner}')
        # The certificate role shares the database (separate runs may use either).
        self.psql(f'GRANT ALL ON DATABASE "{name}" TO {self.CERT_ROLE}')
        self.psql(f"GRANT ALL ON SCHEMA public TO {self.CERT_ROLE}", name)
        return name

    def terminate_backends(self, database=None, application="twofactord"):
        """pg_terminate_backend on every session of `application`; returns how many."""
        where = f"application_name = '{application}'"
        if database:
            where += f" AND datname = '{database}'"
        rows = self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}")
        return len(rows)

    def url(self, database="postgres", user="postgres"):
        return f"postgresql://{user}@{self.host}:{self.port}/{database}?sslmode=disable"

    def daemon_config(self, database, role=None, sslmode=None, ca=None, password=True, timeout=None):
        """twofactord.conf keys (a dict for helpers.Daemon) that put its store in `database`."""
        role = role or self.ROLE
        if sslmode is None:
            sslmode = "verify-full" if self.tls else "disable"
        config = {
            "store": "postgresql",
            "postgres_host": self.host,
            "postgres_port": str(self.port),
            "postgres_database": database,
            "postgres_user": role,
            "postgres_sslmode": sslmode,
        }
        if password and role == self.ROLE:
            config["postgres_password_file"] = self.password_file
        if sslmode != "disable":
            config["postgres_ca_file"] = ca or f"{self.certs}/ca.crt"
        if role == self.CERT_ROLE:
            config["postgres_cert_file"] = f"{self.certs}/client.crt"
            config["postgres_key_file"] = f"{self.certs}/client.key"
        if timeout is not None:
            config["postgres_timeout"] = str(timeout)
        return config


# --- pytest fixtures ------------------------------------------------------------------------

try:
    import pytest

    def _cluster(tls):
        if os.geteuid() != 0 or not available():
            pytest.skip("needs root and Debian's postgresql package (scripts/packages.txt)")
        with PostgresCluster(tls=tls) as pg:
            yield pg

    @pytest.fixture(scope="module")
    def pg_cluster():
        """A private PostgreSQL cluster without TLS, for the module's tests."""
        yield from _cluster(False)

    @pytest.fixture(scope="module")
    def pg_cluster_tls():
        """A private PostgreSQL cluster with TLS (pg.certs: ca.crt, wrong-ca.crt, client.*)."""
        yield from _cluster(True)
except ImportError:  # used as a script without pytest
    pass


def main(argv):
    if len(argv) < 3 or argv[1] != "run" or "--" not in argv:
        print(__doc__)
        return 2
    command = argv[argv.index("--") + 1:]
    if os.geteuid() != 0 or not available():
        print("pg_kit: no PostgreSQL cluster (needs root and the postgresql package); "
              "the PostgreSQL tests will skip", file=sys.stderr)
        return subprocess.run(command).returncode
    with PostgresCluster() as pg:
        env = dict(os.environ, TWOFACTOR_TEST_POSTGRES_URL=pg.url())
        try:
            return subprocess.run(command, env=env).returncode
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv))
