"""The benchmarks of issue 13, driven by bench/run (which builds what they need first).

  login   pamtester wall time, interleaved, median per stack, a fresh user and code per login
  cycles  pam_start/pam_authenticate/pam_end per second in one process (bench/pam_cycles.c)
  load    protocol v1 load (bench/loadgen.c) at 1/8/64/256 clients against the built twofactord
          and against a no-work C server on the same kind of socket (bench/noop_server.c)
  scale   stores of 10,000 / 100,000 (/ 1,000,000 with --million) accounts: enrollment rate
          through the daemon, verify latency, store size, daemon RSS, `twofactor admin list` time

Everything runs against private copies: the daemon under test is the built twofactord on a
private socket, store and key (the test kit's Daemon), PAM services are /etc/pam.d/<unique name>
naming the built module by its absolute path, users are throwaway (useradd) and all of it is
removed on every exit path. Nothing is installed. Needs root.

--store postgresql runs every daemon under test (and bench/populate) on a private PostgreSQL
cluster of the test kit (Tests/integration/pg_kit.py: initdb on a free 127.0.0.1 port, removed
on every exit path), one fresh database per daemon; the store size is then pg_database_size.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True, help="the build's products (.build/release)")
    p.add_argument("--tools", required=True, help="the compiled C tools (loadgen, noop_server, pam_cycles)")
    p.add_argument("--smoke", action="store_true", help="seconds-long run of every benchmark, figures meaningless")
    p.add_argument("--million", action="store_true", help="add the 1,000,000-account scale tier (long)")
    p.add_argument("--sizes", help="comma-separated scale tiers instead of 10000,100000[,1000000]")
    p.add_argument("--only", default="login,cycles,load,scale", help="comma-separated benchmarks to run")
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the daemon's store: its SQLite file (default) or a private PostgreSQL cluster")
    p.add_argument("--out", required=True, help="where the JSON results go (the Markdown goes beside it)")
    return p.parse_args()


ARGS = parse_args()
os.environ["TWOFACTORD"] = os.path.join(ARGS.bin_dir, "twofactord")
os.environ["TWOFACTOR_CLI"] = os.path.join(ARGS.bin_dir, "twofactor")
os.environ["TWOFACTOR_PAM_MODULE"] = os.path.join(ARGS.bin_dir, "libpam_twofactor.so")
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
import helpers  # noqa: E402  (reads the paths above at import)
import pg_kit  # noqa: E402

SMOKE = ARGS.smoke
LOGIN_ROUNDS = 3 if SMOKE else 90
CYCLE_USERS = 3 if SMOKE else 100
CYCLE_REPEAT = 20 if SMOKE else 2000
LOAD_LEVELS = [1, 8, 64, 256]
LOAD_SECONDS = 0.3 if SMOKE else 4
SCALE_SIZES = ([int(n) for n in ARGS.sizes.split(",")] if ARGS.sizes else
               # The smoke tier holds at least two unused steps per account for every verify the
               # smoke run sends (SMOKE_MAX_REQUESTS per level); the debug build on PostgreSQL
               # verifies a few hundred a second and fills its store slowly.
               [1_000 if ARGS.store == "postgresql" else 10_000] if SMOKE else
               [10_000, 100_000] + ([1_000_000] if ARGS.million else []))
DAEMON_SETTINGS = {"max_connections": 1000}  # 256 clients at once; root has 4x this anyway


def tool(name):
    return os.path.join(ARGS.tools, name)


def log(text):
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Cleanup:
    """Everything made, undone in reverse on every exit path (also on SIGTERM/SIGINT)."""

    def __init__(self):
        self.actions = []

    def add(self, action):
        self.actions.append(action)
        return action

    def run(self):
        while self.actions:
            try:
                self.actions.pop()()
            except Exception as error:  # keep undoing the rest
                log(f"cleanup: {error}")


CLEANUP = Cleanup()


class Postgres:
    """--store postgresql: one private cluster for the whole run (main() destroys it on every
    exit path), a fresh database for each daemon, dropped after that daemon stops."""

    cluster = None

    @classmethod
    def start(cls):
        if not pg_kit.available():
            sys.exit("bench/run --store postgresql: needs Debian's postgresql package (scripts/packages.txt)")
        log("postgresql: starting a private cluster (Tests/integration/pg_kit.py)")
        cls.cluster = pg_kit.PostgresCluster()
        version = cls.cluster.psql("SHOW server_version")[0]
        log(f"postgresql: {version} on 127.0.0.1:{cls.cluster.port}")
        return version

    @classmethod
    def destroy(cls):
        if cls.cluster is not None:
            cls.cluster.destroy()
            cls.cluster = None

    @classmethod
    def new_database(cls):
        name = cls.cluster.create_database()
        # Added before the daemon's destroy, so it runs after it (Cleanup undoes in reverse).
        CLEANUP.add(lambda: cls.cluster and cls.cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return name

    @classmethod
    def size(cls, database):
        return int(cls.cluster.psql(f"SELECT pg_database_size('{database}')")[0])


def new_daemon():
    """The daemon under test (not started), on the store --store names; destroyed by CLEANUP."""
    settings = dict(DAEMON_SETTINGS)
    database = None
    if ARGS.store == "postgresql":
        database = Postgres.new_database()
        settings.update(Postgres.cluster.daemon_config(database))
    d = helpers.Daemon(None, settings)
    d.pg_database = database
    CLEANUP.add(d.destroy)
    return d


def start_daemon():
    return new_daemon().start()


def new_user(prefix):
    u = helpers.ThrowawayUser(prefix)
    CLEANUP.add(u.remove)
    return u


def pam_service(lines):
    s = helpers.PamService(helpers.unique_name("tfb"), lines, comment="bench/run")
    CLEANUP.add(s.remove)
    return s.name


def b32(key):
    return base64.b32encode(key).decode().rstrip("=")


class GoogleAuthenticator:
    """~/.google_authenticator with reuse protection and the rate limit on, as the issue asks."""

    @staticmethod
    def provision(user):
        secret = b32(secrets.token_bytes(10))  # 16 base32 characters, as google-authenticator writes
        path = os.path.join(user.home, ".google_authenticator")
        with open(path, "w") as f:
            f.write(f'{secret}\n" RATE_LIMIT 3 30\n" DISALLOW_REUSE\n" TOTP_AUTH\n')
        os.chown(path, user.uid, user.gid)
        os.chmod(path, 0o400)
        return secret


class Oath:
    """pam_oath with a private users file (it rewrites the file on each success, like /etc/users.oath)."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "users.oath")
        open(self.path, "w").close()
        os.chmod(self.path, 0o600)

    def provision(self, user):
        key = secrets.token_bytes(20)
        with open(self.path, "a") as f:
            f.write(f"HOTP/T30/6 {user.name} - {key.hex()}\n")
        return b32(key)


def stacks(daemon, oath, workdir):
    module = helpers.PAM_MODULE
    permit = "auth required pam_permit.so"
    # The floor of a login that asks a daemon: pam_twofactor against bench/noop_server.c, which
    # answers at once (`enrolled` and `accepted`, or `notEnrolled`).
    no_work = NoopServer(workdir, label="login-no-work")
    no_work_unenrolled = NoopServer(workdir, args=("not-enrolled",), label="login-no-work-unenrolled")
    # Each stack ends in pam_permit, so "over pam_permit" is the first module's own cost.
    return {
        "pam_permit": pam_service([permit]),
        "twofactor": pam_service([f"auth required {module} socket={daemon.socket}", permit]),
        "twofactor_no_work": pam_service([f"auth required {module} socket={no_work.socket}", permit]),
        "twofactor_no_work_unenrolled": pam_service([f"auth required {module} socket={no_work_unenrolled.socket}",
                                                     permit]),
        "google_authenticator": pam_service(["auth required pam_google_authenticator.so", permit]),
        "oath": pam_service([f"auth required pam_oath.so usersfile={oath.path} window=1 digits=6", permit]),
    }


def pamtester_time(service, user, answers):
    text = "".join(a + "\n" for a in answers).encode()
    start = time.perf_counter()
    done = subprocess.run(["pamtester", service, user, "authenticate"], input=text, capture_output=True)
    return time.perf_counter() - start, done.returncode == 0


# --- login latency ------------------------------------------------------------------------------

def bench_login(workdir):
    log(f"login latency: {LOGIN_ROUNDS} rounds")
    daemon = start_daemon()
    oath = Oath(workdir)
    svc = stacks(daemon, oath, workdir)
    times = {k: [] for k in ("pam_permit", "twofactor_enrolled", "twofactor_unenrolled", "twofactor_wrong_code",
                             "google_authenticator", "oath", "no_work_daemon_enrolled", "no_work_daemon_unenrolled")}
    unexpected = []
    for _ in range(LOGIN_ROUNDS):
        u, v = new_user("tfbu"), new_user("tfbv")
        enrolled = daemon.enroll(u.name)
        ga_secret = GoogleAuthenticator.provision(u)
        oath_secret = oath.provision(u)
        runs = [
            ("pam_permit", svc["pam_permit"], u, lambda: [], True),
            ("twofactor_enrolled", svc["twofactor"], u, lambda: [enrolled.codes.next_code()], True),
            ("twofactor_unenrolled", svc["twofactor"], v, lambda: [], True),
            ("twofactor_wrong_code", svc["twofactor"], u, lambda: [enrolled.codes.wrong_code()], False),
            ("google_authenticator", svc["google_authenticator"], u, lambda: [helpers.totp(ga_secret)], True),
            ("oath", svc["oath"], u, lambda: [helpers.totp(oath_secret)], True),
            # Any six digits: the no-work server accepts every code.
            ("no_work_daemon_enrolled", svc["twofactor_no_work"], u, lambda: ["123456"], True),
            ("no_work_daemon_unenrolled", svc["twofactor_no_work_unenrolled"], v, lambda: [], True),
        ]
        random.shuffle(runs)  # interleaved: no stack always runs first or last
        for name, service, user, answers, expected in runs:
            seconds, ok = pamtester_time(service, user.name, answers())
            times[name].append(seconds)
            if ok != expected:
                unexpected.append(name)
    out = {}
    for name, values in times.items():
        out[name] = {"median_ms": statistics.median(values) * 1000, "n": len(values)}
    base = out["pam_permit"]["median_ms"]
    for name in out:
        out[name]["over_permit_ms"] = out[name]["median_ms"] - base
    ga = out["google_authenticator"]["over_permit_ms"]
    for name in out:
        out[name]["ratio_to_ga_overhead"] = out[name]["over_permit_ms"] / ga if ga > 0 else None
    return {"stacks": out, "unexpected_outcomes": unexpected}


# --- in-process cycles --------------------------------------------------------------------------

def bench_cycles(workdir):
    log(f"in-process cycles: {CYCLE_USERS} users, {CYCLE_REPEAT} repeats of the stateless stacks")
    daemon = start_daemon()
    oath = Oath(workdir)
    svc = stacks(daemon, oath, workdir)
    users = [new_user("tfbc") for _ in range(CYCLE_USERS)]
    plain = new_user("tfbn")
    lines = {"twofactor_enrolled": [], "twofactor_wrong_code": [], "google_authenticator": [], "oath": []}
    for u in users:
        e = daemon.enroll(u.name)
        lines["twofactor_enrolled"].append((u.name, e.codes.next_code()))
        lines["twofactor_wrong_code"].append((u.name, e.codes.wrong_code()))
        lines["google_authenticator"].append((u.name, helpers.totp(GoogleAuthenticator.provision(u))))
        lines["oath"].append((u.name, helpers.totp(oath.provision(u))))
    plan = [
        ("pam_permit", svc["pam_permit"], [(plain.name, "-")], CYCLE_REPEAT, True),
        ("twofactor_unenrolled", svc["twofactor"], [(plain.name, "-")], CYCLE_REPEAT, True),
        ("twofactor_enrolled", svc["twofactor"], lines["twofactor_enrolled"], 1, True),
        ("twofactor_wrong_code", svc["twofactor"], lines["twofactor_wrong_code"], 1, False),
        ("google_authenticator", svc["google_authenticator"], lines["google_authenticator"], 1, True),
        ("oath", svc["oath"], lines["oath"], 1, True),
        ("no_work_daemon_unenrolled", svc["twofactor_no_work_unenrolled"], [(plain.name, "-")], CYCLE_REPEAT, True),
    ]
    out = {}
    for name, service, entries, repeat, expect_success in plan:
        path = os.path.join(workdir, f"cycles-{name}.txt")
        with open(path, "w") as f:
            f.writelines(f"{user} {code}\n" for user, code in entries)
        done = subprocess.run([tool("pam_cycles"), service, path, str(repeat)], capture_output=True, text=True,
                              check=True, timeout=600)
        result = json.loads(done.stdout)
        result["as_expected"] = result["success"] == (result["cycles"] if expect_success else 0)
        out[name] = result
    return out


# --- daemon load --------------------------------------------------------------------------------

# The smoke run's bound on each level's requests: every verify spends an account's step, and a
# fast machine must not use up the store's usable steps before the last verify row.
SMOKE_MAX_REQUESTS = ("--max-requests", "1000") if SMOKE else ()


def loadgen(socket, op, accounts, clients, seconds=LOAD_SECONDS, extra=()):
    if op != "enroll":
        extra = (*SMOKE_MAX_REQUESTS, *extra)
    done = subprocess.run(["nice", "-n", "10", tool("loadgen"), "--socket", socket, "--op", op,
                           "--clients", ",".join(map(str, clients)), "--seconds", str(seconds),
                           "--accounts", accounts, *extra],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {op} failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def enroll_accounts(daemon, workdir, count, prefix):
    """`count` accounts enrolled through the daemon (enrollBegin + enrollConfirm) by 32 clients."""
    path = os.path.join(workdir, f"accounts-{prefix}.txt")
    result = loadgen(daemon.socket, "enroll", path, [32], extra=("--count", str(count), "--prefix", prefix))[0]
    os.chmod(path, 0o600)  # TOTP secrets of throwaway accounts; removed with the work directory
    return path, result


class NoopServer:
    """One of bench/'s C servers on a socket of its own, stopped by CLEANUP: by default the
    ceiling, bench/noop_server.c, which answers every frame at once."""

    def __init__(self, workdir, name="noop_server", args=(), label=None):
        self.socket = os.path.join(workdir, f"{label or name}.sock")
        self.process = subprocess.Popen([tool(name), self.socket, *args], stdout=subprocess.PIPE)
        CLEANUP.add(self.stop)
        assert self.process.stdout.readline().strip() == b"listening"

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


# What the load test sends: the wire operation, the client counts, how, and whether the ceiling,
# the floor and the daemon take turns at each level (interleaved) or each runs every level in one
# go. Interleaved rows compare seconds next to each other: on this shared machine the ceiling alone
# moved between 12,000 and 18,000 checks/s at one client from one minute to the next.
LOAD_OPS = {
    "check": ("check", LOAD_LEVELS, (), False),
    "verify": ("verify", LOAD_LEVELS, (), False),
    # As logins come: a new connection for each request (the module's), so the daemon's accept
    # and connection set-up are in every figure.
    "check, a connection each": ("check", LOAD_LEVELS, ("--connect-each", "1"), False),
    # One login at a time after 3 ms of quiet (about a pamtester run's own time), so the daemon
    # and the CPUs have gone idle: the round trip a single login pays, and its floor (the ceiling
    # server's figure) for the login-overhead targets.
    "check, a connection each, idle between": ("check", [1], ("--connect-each", "1", "--gap-us", "3000"), False),
    # The same for the durable part of an enrolled login: a verify, committed before it is answered.
    "verify, a connection each, idle between": ("verify", [1], ("--connect-each", "1", "--gap-us", "3000"), False),
    # The p99 target at 8 clients, five times over: one run's tail follows whatever else the shared
    # disk and CPUs did in its seconds, so the table shows the spread (and BENCHMARKS.md its median).
    "verify, 8 clients, five runs": ("verify", [8] * 5, (), True),
    # The check target at one client, the same way: its ratio is a few microseconds either way.
    "check, 1 client, five runs": ("check", [1] * 5, (), True),
}


def bench_load(workdir, daemon, accounts, count):
    log(f"daemon load: a store of {count} accounts, {LOAD_SECONDS} s per level")
    noop = NoopServer(workdir)
    # The floors (bench/floor_server.c): `check` reads the daemon's own SQLite file, `verify`
    # commits its changes to a copy of it made as the floor starts.
    floor = (NoopServer(workdir, "floor_server", (os.path.join(daemon.state_dir, "twofactor.db"),
                                                   os.path.join(workdir, "floor-audit.log"),
                                                   os.path.join(workdir, "floor-copy.db")))
             if ARGS.store == "sqlite" else None)
    out = {"accounts": count, "seconds_per_level": LOAD_SECONDS}
    for op in LOAD_OPS:
        wire_op, levels, extra, interleaved = LOAD_OPS[op]
        ceiling, floors, measured = [], [], []
        for turn in ([[level] for level in levels] if interleaved else [levels]):
            ceiling += loadgen(noop.socket, wire_op, accounts, turn, extra=("--any-step", "1", *extra))
            # The verify floor checks no code: like the ceiling, any step will do.
            floors += (loadgen(floor.socket, wire_op, accounts, turn,
                               extra=(("--any-step", "1") if wire_op == "verify" else ()) + extra)
                       if floor else [None] * len(turn))
            measured += loadgen(daemon.socket, wire_op, accounts, turn, extra=extra)
        rows = []
        for c, f, d in zip(ceiling, floors, measured):
            rows.append({"clients": d["clients"], "daemon": d, "ceiling": c, "floor": f,
                         "ratio": d["ops_per_s"] / c["ops_per_s"] if c["ops_per_s"] else None,
                         "floor_ratio": f["ops_per_s"] / c["ops_per_s"] if f and c["ops_per_s"] else None})
        out[op] = rows
    if ARGS.store == "sqlite":
        # What one durable commit waits for on the store's file system, in the same minutes.
        done = subprocess.run([tool("fsync_floor"), daemon.state_dir, "0.3" if SMOKE else "3"],
                              capture_output=True, text=True, check=True)
        out["fsync_floor"] = json.loads(done.stdout)
    return out


# --- scale --------------------------------------------------------------------------------------

def store_bytes(daemon):
    if daemon.pg_database:
        return Postgres.size(daemon.pg_database)
    total = 0
    for name in os.listdir(daemon.state_dir):
        total += os.path.getsize(os.path.join(daemon.state_dir, name))
    return total


def rss_kb(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def admin_list_time(daemon, expected):
    start = time.perf_counter()
    done = subprocess.run(helpers.cli_command(None, "admin", "list", "--json", socket=daemon.socket),
                          capture_output=True, text=True, env=helpers.CLI_ENV, timeout=3600)
    seconds = time.perf_counter() - start
    listed = done.stdout.count('"user": ') if done.returncode == 0 else 0
    return {"seconds": seconds, "exit": done.returncode, "accounts_listed": listed, "complete": listed == expected,
            "error": done.stderr.strip()[-300:] if done.returncode else None}


# Larger tiers are filled by bench/populate, not over the socket, except THROUGH_DAEMON accounts,
# which measure the enrollment rate. The smoke run's one tier takes both paths.
BULK_ABOVE = 200 if SMOKE else 100_000
THROUGH_DAEMON = 100 if SMOKE else 20_000


def populate(daemon, workdir, count, prefix):
    """`count` accounts written by bench/populate (the daemon's AccountRules on its store, group
    committed), before the daemon starts. Returns the accounts file and the rate."""
    daemon.write_config()
    path = os.path.join(workdir, f"accounts-{prefix}.txt")
    start = time.perf_counter()
    subprocess.run(["nice", "-n", "10", os.path.join(ARGS.bin_dir, "twofactor-bench-populate"),
                    "--config", daemon.config_path, "--count", str(count), "--prefix", prefix, "--out", path],
                   check=True, timeout=7200)
    return path, count / (time.perf_counter() - start)


def bench_scale(workdir, size, keep=False):
    log(f"scale: {size} accounts")
    daemon = new_daemon()
    bulk, bulk_rate = 0, None
    parts = []
    if size > BULK_ABOVE:
        bulk = size - THROUGH_DAEMON
        log(f"scale: {bulk} accounts through bench/populate")
        bulk_path, bulk_rate = populate(daemon, workdir, bulk, f"b{size}x")
        parts.append(bulk_path)
    daemon.start()
    path, enrolled = enroll_accounts(daemon, workdir, size - bulk, f"s{size}x")
    parts.append(path)
    # Verifies visit the accounts in random order, not in the order of the store's index.
    accounts = os.path.join(workdir, f"accounts-{size}.txt")
    lines = []
    for part in parts:
        with open(part) as f:
            lines += f.readlines()
    random.shuffle(lines)
    with open(accounts, "w") as f:
        f.writelines(lines)
    os.chmod(accounts, 0o600)
    verify = loadgen(daemon.socket, "verify", accounts, [1], seconds=0.3 if SMOKE else 3)[0]
    check = loadgen(daemon.socket, "check", accounts, [1], seconds=0.3 if SMOKE else 3)[0]
    result = {
        "accounts": size,
        "enroll": enrolled,
        "enrollments_per_s": enrolled["ops_per_s"],
        "populated_in_bulk": bulk,
        "bulk_populate_per_s": bulk_rate,
        "verify_1_client": verify,
        "check_1_client": check,
        "store_bytes": store_bytes(daemon),
        "daemon_rss_kb": rss_kb(daemon.process.pid),
        "admin_list": admin_list_time(daemon, size),
    }
    if not keep:
        daemon.destroy()
    return result, daemon, accounts


# --- report -------------------------------------------------------------------------------------

def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "load_average_at_start": os.getloadavg()}


def markdown(results):
    lines = [f"# bench/run results ({'smoke, figures meaningless' if SMOKE else 'full'})", "",
             f"date: {results['date']}  machine: {results['machine']}", "",
             f"store: {results['store']}" + (f" (PostgreSQL {results['postgresql_version']}, private cluster on "
                                            "127.0.0.1; store MB is pg_database_size)"
                                            if results['store'] == 'postgresql' else ""), ""]
    if "login" in results:
        lines += ["## Login latency (pamtester wall time, median)", "",
                  "| stack | median ms | over pam_permit ms | ratio to google-authenticator's overhead |",
                  "|---|---|---|---|"]
        for name, r in results["login"]["stacks"].items():
            ratio = "" if r["ratio_to_ga_overhead"] is None else f"{r['ratio_to_ga_overhead']:.2f}"
            lines.append(f"| {name} | {r['median_ms']:.2f} | {r['over_permit_ms']:+.2f} | {ratio} |")
        lines += ["", f"unexpected outcomes: {results['login']['unexpected_outcomes'] or 'none'}", ""]
    if "cycles" in results:
        lines += ["## In-process cycles", "", "| stack | cycles/s | cycles | as expected |", "|---|---|---|---|"]
        for name, r in results["cycles"].items():
            lines.append(f"| {name} | {r['cycles_per_s']:.0f} | {r['cycles']} | {r['as_expected']} |")
        lines.append("")
    if "load" in results:
        lines += ["## Daemon load", "", "ceiling: bench/noop_server.c (no work); floor: bench/floor_server.c "
                  "(the least work, in C: check reads the row and writes the audit line; verify also changes "
                  "the row in a copy of the store and group-commits it with fdatasync before it answers)", "",
                  "| op | clients | daemon ops/s | p50 µs | p99 µs | p999 µs | ceiling ops/s | "
                  "ceiling p50 µs | ratio | floor ops/s | floor p50 µs | floor p99 µs | floor's ratio | daemon statuses |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for op in [op for op in LOAD_OPS if op in results["load"]]:
            for row in results["load"][op]:
                d, c, f = row["daemon"], row["ceiling"], row.get("floor")
                floor = (f"{f['ops_per_s']:.0f} | {f['p50_us']:.0f} | {f['p99_us']:.0f} | {row['floor_ratio']:.2f}"
                         if f else "- | - | - | -")
                lines.append(f"| {op} | {row['clients']} | {d['ops_per_s']:.0f} | {d['p50_us']:.0f} | {d['p99_us']:.0f} | "
                             f"{d['p999_us']:.0f} | {c['ops_per_s']:.0f} | {c['p50_us']:.0f} | "
                             f"{row['ratio']:.2f} | {floor} | {d['statuses']}{' EXHAUSTED' if d['exhausted_clients'] else ''} |")
            if LOAD_OPS[op][3]:  # interleaved: each run's ratio is its own, the row below their median
                rows = results["load"][op]
                floor_ratios = [row["floor_ratio"] for row in rows if row["floor_ratio"]]
                floor = f"{statistics.median(floor_ratios):.2f}" if floor_ratios else "-"
                lines.append(f"| {op}: median of {len(rows)} | | | | | | | | "
                             f"{statistics.median(row['ratio'] for row in rows):.2f} | | | | {floor} | |")
        if "fsync_floor" in results["load"]:
            f = results["load"]["fsync_floor"]
            lines.append(f"\nfdatasync of a 4 KiB append on the store's file system (bench/fsync_floor.c), same run: "
                         f"p50 {f['p50_us']:.0f} µs, p99 {f['p99_us']:.0f} µs ({f['flushes']} flushes)")
        lines.append("")
    if "scale" in results:
        lines += ["## Scale", "", "| accounts | enrollments/s (daemon, 32 clients) | filled by bench/populate | verify p50 µs | verify p99 µs | check p50 µs | store MB | "
                  "daemon RSS MB (peak) | admin list s | listed all |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["scale"]:
            rss = r["daemon_rss_kb"]
            bulk = f"{r['populated_in_bulk']} ({r['bulk_populate_per_s']:.0f}/s)" if r["populated_in_bulk"] else "0"
            lines.append(f"| {r['accounts']} | {r['enrollments_per_s']:.0f} | {bulk} | {r['verify_1_client']['p50_us']:.0f} | "
                         f"{r['verify_1_client']['p99_us']:.0f} | {r['check_1_client']['p50_us']:.0f} | "
                         f"{r['store_bytes'] / 1e6:.1f} | {rss.get('VmRSS', 0) / 1024:.1f} ({rss.get('VmHWM', 0) / 1024:.1f}) | "
                         f"{r['admin_list']['seconds']:.2f} | {r['admin_list']['complete']} |")
        lines.append("")
    return "\n".join(lines)


def main():
    if os.geteuid() != 0:
        sys.exit("bench/run needs root (throwaway users, /etc/pam.d/<unique> services)")
    for name in ("twofactord", "twofactor", "libpam_twofactor.so", "twofactor-bench-populate"):
        if not os.path.exists(os.path.join(ARGS.bin_dir, name)):
            sys.exit(f"missing {name} in {ARGS.bin_dir}")
    only = set(ARGS.only.split(","))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))  # unwinds through finally: cleanup runs
    workdir = tempfile.mkdtemp(prefix="tfbench-", dir="/tmp")
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "mode": "smoke" if SMOKE else "full", "machine": machine(),
               "build": ARGS.bin_dir, "store": ARGS.store}
    errors = {}

    def section(name, body):
        """Runs one benchmark in its own work directory; whatever it made is undone after it."""
        os.makedirs(workdir, exist_ok=True)
        try:
            body()
        except Exception as error:
            import traceback
            traceback.print_exc()
            errors[name] = f"{type(error).__name__}: {error}"
        finally:
            CLEANUP.run()
            shutil.rmtree(workdir, ignore_errors=True)

    def scale_and_load():
        results["scale"] = []
        for size in SCALE_SIZES:
            # The load test runs on the largest store below 1,000,000 (many accounts, so every
            # verify can be an accepted code: each account accepts one code per 30 s step).
            keep = "load" in only and size == max([n for n in SCALE_SIZES if n < 1_000_000] or SCALE_SIZES)
            scale, daemon, accounts = bench_scale(workdir, size, keep=keep)
            if "scale" in only:
                results["scale"].append(scale)
            if keep:
                results["load"] = bench_load(workdir, daemon, accounts, size)
                daemon.destroy()
        if "scale" not in only:
            del results["scale"]

    try:
        if ARGS.store == "postgresql":
            results["postgresql_version"] = Postgres.start()
        if "login" in only:
            section("login", lambda: results.__setitem__("login", bench_login(workdir)))
        if "cycles" in only:
            section("cycles", lambda: results.__setitem__("cycles", bench_cycles(workdir)))
        if "scale" in only or "load" in only:
            section("scale/load", scale_and_load)
    finally:
        CLEANUP.run()
        Postgres.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    results["errors"] = errors
    with open(ARGS.out, "w") as f:
        json.dump(results, f, indent=1)
    text = markdown(results)
    with open(os.path.splitext(ARGS.out)[0] + ".md", "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"\nresults: {ARGS.out} and {os.path.splitext(ARGS.out)[0]}.md")
    # One line per benchmark for scripts/test-all: it ran, and every outcome was the expected one
    # (timings are never judged here).
    verdicts = {}
    if "login" in only:
        verdicts["login"] = "login" in results and not results["login"]["unexpected_outcomes"]
    if "cycles" in only:
        verdicts["cycles"] = "cycles" in results and all(r["as_expected"] for r in results["cycles"].values())
    if "load" in only:
        # Every row did requests (a verify row whose accounts had no unused step left would
        # measure nothing), and every answer was the expected one.
        verdicts["load"] = "load" in results and all(
            row[side]["failed_clients"] == 0 and row[side]["ops"] > 0
            and set(row[side]["statuses"]) <= {"accepted", "enrolled"}
            for op in LOAD_OPS for row in results["load"][op] for side in ("daemon", "ceiling", "floor")
            if row[side] is not None)
    if "scale" in only:
        verdicts["scale"] = bool(results.get("scale")) and all(
            r["admin_list"]["complete"] and set(r["verify_1_client"]["statuses"]) <= {"accepted"}
            for r in results["scale"]) and len(results["scale"]) == len(SCALE_SIZES)
    # Named by store when it is not the default, so scripts/test-all's two runs read apart.
    label = "" if ARGS.store == "sqlite" else f"{ARGS.store}/"
    for name, ok in verdicts.items():
        print(f"bench-result: {label}{name} {'passed' if ok else 'failed'}")
    for name, error in errors.items():
        print(f"bench-error: {label}{name}: {error}")
    sys.exit(0 if all(verdicts.values()) and not errors else 1)

if __name__ == "__main__":
    main()
