"""Benchmark: the PostgreSQL gateway against a direct connection, PgBouncer and HAProxy.

Starts ``dbkeep up`` on a fresh state dir, creates one aurora-postgresql cluster, initialises
pgbench (scale 1) and runs ``pgbench -S`` (select-only) at 1, 8 and 32 clients against:

* ``direct``        the engine's private unix socket (no proxy, no TLS): the reference;
* ``gateway``       dbkeep's endpoint, cleartext (``sslmode=disable``);
* ``gateway+metrics`` the ``gateway`` row while ``/metrics`` is scraped every second (issue 13:
                    metrics must not move the gateway's throughput);
* ``gateway-tls``   dbkeep's endpoint, ``sslmode=verify-full`` against DIR/ca.pem;
* ``pgbouncer``     PgBouncer in session mode on TCP, in front of the same engine socket;
* ``pgbouncer-tls`` the same PgBouncer with client TLS (a throw-away RSA-2048 certificate;
                    the gateway's handshakes use its ECDSA one, but each connection here makes
                    one handshake, so the key type does not weigh in the throughput rows);
* ``haproxy``       HAProxy in TCP mode (a pure relay) to the same socket, cleartext;
* ``haproxy-tls``   the same HAProxy terminating TLS itself (the throw-away certificate,
                    ``alpn postgresql``). HAProxy cannot answer PostgreSQL's cleartext
                    SSLRequest, so this row uses PostgreSQL 17's direct TLS
                    (``sslnegotiation=direct``), which needs libpq 17 or later;
* ``gateway-tls-direct`` dbkeep's endpoint with the same direct TLS and the same libpq, the
                    like-for-like row for ``haproxy-tls``;
* ``gateway-master``, ``gateway-tls-master`` the ``gateway`` rows as the master user, whose
                    sessions the statement guard inspects (issue 12). Every other row logs in
                    as ``bench_app``, an application role with SELECT on pgbench's tables only,
                    which is not inspected; the ``inspected/uninspected`` lines compare
                    ``gateway-master`` with ``gateway`` (target: at least 0.9x with
                    ``-M prepared``, 0.7x with ``-M simple``; ``--mode prepared,simple`` runs both).

The two direct-TLS rows run Debian's pgbench against the libpq (18) that the psycopg-binary
wheel bundles, through LD_LIBRARY_PATH, since the system's libpq 15 predates direct TLS; the
rows are left out, with a line saying why, when no such libpq is installed.

Each row prints tps, the ratio to ``direct`` at the same client count, and the proxy's own CPU
time per transaction (user+system, from /proc). Then new logins per second with
``pgbench -C`` (a new connection per transaction) through the gateway with TLS and directly,
for the master user (SCRAM with PostgreSQL's 4096 iterations, computed by client and engine
on every login) and for a user whose SCRAM verifier has 1 iteration (the cost of the
connection path itself), plus the gateway's CPU per login and the rate one core could sustain.

Not a test: it asserts nothing. Targets (issue 4): at 8 and 32 clients the gateway at least
equals PgBouncer and HAProxy in the same run; at least 500 new TLS logins per second.

    .venv/bin/python bench/pg_gateway.py [--duration 10] [--clients 1,8,32] [--mode prepared[,simple]]

Issue 12's inspected/uninspected runs alone (PgBouncer cannot run everywhere):

    .venv/bin/python bench/pg_gateway.py --clients 8,32 --mode prepared,simple --no-logins \
        --targets gateway,gateway-master,gateway-tls,gateway-tls-master
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from clusters import create_cluster, socket_of  # noqa: E402
from dbkeep_process import DbkeepProcess  # noqa: E402
from scrape import scraping  # noqa: E402

from dbkeep.engines.passwords import scram_sha256_verifier  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "Bench-Pass-123"
FAST_USER, FAST_PASSWORD = "bench_fast", "Bench-Fast-123"
# the throughput rows run as an application role, except gateway-master and gateway-tls-master:
# the master's sessions are inspected by the statement guard
APP_USER = "bench_app"
ENGINE_OS_USER = "dbkeep"  # dbkeep runs engines as this OS user; PgBouncer refuses to run as root
TPS = re.compile(r"^tps = ([0-9.]+)", re.M)
DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def pgbench(conninfo: str, *args: str, password: str = PASSWORD, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "PGPASSWORD": password}
    return subprocess.run([str(PG_BIN / "pgbench"), *args, conninfo], capture_output=True, text=True, env=env, timeout=timeout)


def direct_tls_libpq(work: Path) -> dict[str, str] | str:
    """The environment that makes pgbench load a libpq with direct TLS, or why there is none.

    psycopg-binary bundles a recent libpq under a hashed name next to its own OpenSSL. Links
    under the plain names, ahead of the wheel's directory in LD_LIBRARY_PATH, make pgbench load
    them; libcrypto is linked too, because pgbench needs one itself and two OpenSSL builds in a
    process bind each other's symbols and crash.
    """
    try:
        import psycopg
        import psycopg_binary
    except ImportError:
        return "psycopg-binary is not installed"
    if psycopg.pq.version() < 170000:
        return f"psycopg-binary's libpq {psycopg.pq.version()} predates direct TLS (17)"
    libs = Path(psycopg_binary.__file__).resolve().parents[1] / "psycopg_binary.libs"
    link_dir = work / "libpq-direct-tls"
    link_dir.mkdir()
    for plain in ("libpq.so.5", "libssl.so.3", "libcrypto.so.3"):
        stem, suffix = plain.split(".so.")
        found = sorted(libs.glob(f"{stem}-*.so.{suffix}*"))
        if not found:
            return f"no {plain} in {libs}"
        (link_dir / plain).symlink_to(found[0])
    return {"LD_LIBRARY_PATH": f"{link_dir}:{libs}"}


class Peers:
    """Throw-away PgBouncer and HAProxy processes with generated configurations."""

    def __init__(self, work: Path, engine_dir: str) -> None:
        self.work = work
        self.engine_dir = engine_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pgbouncer_port = free_port()
        self.haproxy_port = free_port()
        self.haproxy_tls_port = free_port()

    def start(self) -> None:
        self._pgbouncer()
        self._haproxy()

    def _pgbouncer(self) -> None:
        d = self.work / "pgbouncer"
        d.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
        (self.work / "haproxy.pem").write_bytes((d / "cert.pem").read_bytes() + (d / "key.pem").read_bytes())
        (d / "userlist.txt").write_text(f'"master" "{PASSWORD}"\n"{FAST_USER}" "{FAST_PASSWORD}"\n"{APP_USER}" "{PASSWORD}"\n')
        (d / "pgbouncer.ini").write_text(f"""[databases]
appdb = host={self.engine_dir} port=5432 dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.pgbouncer_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {d / 'userlist.txt'}
pool_mode = session
max_client_conn = 500
default_pool_size = 100
client_tls_sslmode = allow
client_tls_key_file = {d / 'key.pem'}
client_tls_cert_file = {d / 'cert.pem'}
logfile = {d / 'pgbouncer.log'}
""")
        cmd = ["pgbouncer", str(d / "pgbouncer.ini")]
        if os.geteuid() == 0:
            uid = pwd.getpwnam(ENGINE_OS_USER).pw_uid
            for path in (d, *d.iterdir()):
                os.chown(path, uid, -1)
            cmd[1:1] = ["-u", ENGINE_OS_USER]
        self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.pgbouncer_pid = self.procs[-1].pid
        wait_port(self.pgbouncer_port)

    def _haproxy(self) -> None:
        cfg = self.work / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend pg
    bind 127.0.0.1:{self.haproxy_port}
    default_backend engine
frontend pg_tls
    bind 127.0.0.1:{self.haproxy_tls_port} ssl crt {self.work / 'haproxy.pem'} alpn postgresql
    default_backend engine
backend engine
    server engine unix@{self.engine_dir}/.s.PGSQL.5432
""")
        self.procs.append(subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.haproxy_pid = self.procs[-1].pid
        wait_port(self.haproxy_port)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def throughput(args: argparse.Namespace, mode: str, clients: list[int],
               targets: dict[str, tuple[str, int | None, dict[str, str] | None]], url: str) -> None:
    """pgbench -S -M mode for every target and client count (mirrored rounds), then the ratios."""
    print(f"pgbench -S -M {mode}, scale 1, {args.duration} s per run, mean of {args.rounds} mirrored rounds, "
          f"{os.cpu_count()} CPUs; ratio = tps / direct tps at the same client count; "
          f"cpu = the proxy's user+system time per transaction")
    print(f"{'clients':>7} {'target':<18} {'tps':>10} {'ratio':>6} {'cpu µs/tx':>10}   runs")
    results: dict[tuple[int, str], float] = {}
    for n in clients:
        threads = str(min(n, os.cpu_count() or 1))
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        order = list(targets)
        for round_ in range(args.rounds):
            for name in (order if round_ % 2 == 0 else order[::-1]):
                conninfo, pid, env = targets[name]
                before = cpu_seconds(pid) if pid else 0.0
                with scraping(url if name.endswith("+metrics") else None):
                    run = pgbench(conninfo, "-S", "-M", mode, "-T", str(args.duration), "-c", str(n), "-j", threads,
                                  "-n", env=env)
                used = cpu_seconds(pid) - before if pid else 0.0
                tps_match, done_match = TPS.search(run.stdout), DONE.search(run.stdout)
                if run.returncode or not tps_match or not done_match:
                    print(f"{n:>7} {name:<18} failed: {run.stderr.strip()[-300:]}")
                    continue
                runs[name].append((float(tps_match.group(1)), used / int(done_match.group(1))))
        for name, samples in runs.items():
            if not samples:
                continue
            tps = results[(n, name)] = sum(t for t, _ in samples) / len(samples)
            ratio = tps / results[(n, "direct")] if (n, "direct") in results else 1.0
            cpu = f"{sum(c for _, c in samples) / len(samples) * 1e6:10.1f}" if targets[name][1] else f"{'-':>10}"
            spread = " ".join(f"{t:.0f}" for t, _ in samples)
            print(f"{n:>7} {name:<18} {tps:>10.0f} {ratio:>6.2f} {cpu}   {spread}", flush=True)
    print()
    target = 0.9 if mode != "simple" else 0.7
    for n in clients:
        if n == 1:
            continue
        line = []
        for mine, peer in (("gateway", "pgbouncer"), ("gateway", "haproxy"), ("gateway-tls", "pgbouncer-tls"),
                           ("gateway-tls", "pgbouncer"), ("gateway-tls", "haproxy"),
                           ("gateway-tls-direct", "haproxy-tls"), ("gateway-tls-direct", "haproxy")):
            if (n, mine) in results and (n, peer) in results:
                line.append(f"{mine}/{peer} {results[(n, mine)] / results[(n, peer)]:.2f}")
        if line:
            print(f"{n} clients: " + ", ".join(line))
        for inspected, plain in (("gateway-master", "gateway"), ("gateway-tls-master", "gateway-tls")):
            if (n, inspected) in results and (n, plain) in results:
                print(f"  inspected/uninspected at {n:2} clients, -M {mode} ({inspected} / {plain}): "
                      f"{results[(n, inspected)] / results[(n, plain)]:.2f}x (target >= {target:.1f}x)")
        if (n, "gateway") in results and (n, "gateway+metrics") in results:
            print(f"  scraped/unscraped at {n:2} clients (gateway+metrics / gateway): "
                  f"{results[(n, 'gateway+metrics')] / results[(n, 'gateway')]:.2f}x")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench -S run (default 10)")
    parser.add_argument("--clients", default="1,8,32", help="client counts (default 1,8,32)")
    parser.add_argument("--mode", default="prepared",
                        help="pgbench -M: simple, extended or prepared (default), or several separated by commas")
    parser.add_argument("--connect-duration", type=int, default=5, help="seconds per pgbench -C run (default 5)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per target and client count, in mirrored order (A..F, F..A) so that background "
                             "load drifting during the benchmark biases no target; the mean is shown (default 2)")
    parser.add_argument("--dbkeep-args", default="",
                        help="extra options for `dbkeep up`, e.g. '--relay-threads 0' for the event-loop relay")
    parser.add_argument("--targets", default="",
                        help="comma-separated subset of direct,gateway,gateway+metrics,gateway-tls,gateway-master,"
                             "gateway-tls-master,gateway-tls-direct,pgbouncer,pgbouncer-tls,haproxy,haproxy-tls (default all)")
    parser.add_argument("--no-logins", action="store_true", help="skip the new-logins-per-second part")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    modes = args.mode.split(",")
    if not set(modes) <= {"simple", "extended", "prepared"}:
        parser.error("--mode: simple, extended, prepared, or several of them")

    work = Path(tempfile.mkdtemp(prefix="dbkeep-bench-pg-"))
    os.chmod(work, 0o755)
    proc = DbkeepProcess(work / "state", extra_args=args.dbkeep_args.split()).start()
    peers: Peers | None = None
    try:
        cluster = create_cluster(proc, "aurora-postgresql", "bench-pg", PASSWORD)
        engine_dir = os.path.dirname(socket_of(proc, cluster))
        ca = proc.state_dir / "ca.pem"
        port = cluster["Port"]
        direct = f"host={engine_dir} port=5432 user=master dbname=appdb"
        init = pgbench(direct, "-i", "-s", "1", "-q")
        if init.returncode:
            raise RuntimeError(init.stderr)
        verifier = scram_sha256_verifier(FAST_PASSWORD, iterations=1)
        subprocess.run([str(PG_BIN / "psql"), direct, "-q", "-c", f"CREATE ROLE {FAST_USER} LOGIN PASSWORD '{verifier}'",
                        "-c", f"GRANT SELECT ON pgbench_accounts, pgbench_branches TO {FAST_USER}",
                        "-c", f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{PASSWORD}'",
                        "-c", f"GRANT SELECT ON pgbench_accounts, pgbench_branches TO {APP_USER}"],
                       check=True, capture_output=True, env={**os.environ, "PGPASSWORD": PASSWORD})
        peers = Peers(work, engine_dir)
        peers.start()
        gateway_pid = proc.proc.pid  # type: ignore[union-attr]
        targets: dict[str, tuple[str, int | None, dict[str, str] | None]] = {
            "direct": (direct.replace("user=master", f"user={APP_USER}"), None, None),
            "gateway": (f"host=localhost port={port} user={APP_USER} dbname=appdb sslmode=disable", gateway_pid, None),
            "gateway+metrics": (f"host=localhost port={port} user={APP_USER} dbname=appdb sslmode=disable", gateway_pid, None),
            "gateway-tls": (f"host=localhost port={port} user={APP_USER} dbname=appdb sslmode=verify-full sslrootcert={ca}",
                            gateway_pid, None),
            "gateway-master": (f"host=localhost port={port} user=master dbname=appdb sslmode=disable", gateway_pid, None),
            "gateway-tls-master": (f"host=localhost port={port} user=master dbname=appdb sslmode=verify-full "
                                   f"sslrootcert={ca}", gateway_pid, None),
            "pgbouncer": (f"host=127.0.0.1 port={peers.pgbouncer_port} user={APP_USER} dbname=appdb sslmode=disable",
                          peers.pgbouncer_pid, None),
            "pgbouncer-tls": (f"host=127.0.0.1 port={peers.pgbouncer_port} user={APP_USER} dbname=appdb sslmode=require",
                              peers.pgbouncer_pid, None),
            "haproxy": (f"host=127.0.0.1 port={peers.haproxy_port} user={APP_USER} dbname=appdb sslmode=disable",
                        peers.haproxy_pid, None),
        }
        direct_tls = direct_tls_libpq(work)
        if isinstance(direct_tls, str):
            print(f"no direct-TLS rows (gateway-tls-direct, haproxy-tls): {direct_tls}")
        else:
            targets["gateway-tls-direct"] = (
                f"host=localhost port={port} user={APP_USER} dbname=appdb sslmode=verify-full sslrootcert={ca} "
                "sslnegotiation=direct", gateway_pid, direct_tls)
            targets["haproxy-tls"] = (
                f"host=127.0.0.1 port={peers.haproxy_tls_port} user={APP_USER} dbname=appdb sslmode=require "
                "sslnegotiation=direct", peers.haproxy_pid, direct_tls)
        if args.targets:
            wanted = set(args.targets.split(",")) | {"direct"}
            targets = {name: value for name, value in targets.items() if name in wanted}
        for conninfo, _, env in targets.values():  # every path works before anything is timed
            check = pgbench(conninfo, "-S", "-t", "10", "-c", "1", env=env)
            if check.returncode:
                raise RuntimeError(f"{conninfo}: {check.stderr}")

        for mode in modes:
            throughput(args, mode, clients, targets, proc.url)

        if args.no_logins or not {"gateway", "gateway-tls"} <= set(targets):
            return 0
        print()
        print(f"new logins per second: pgbench -C -S, 8 clients, {args.connect_duration} s; "
              "gateway cpu = the dbkeep process's CPU per login; 1-core = 1 / that")
        print(f"{'user':<26} {'target':<14} {'logins/s':>9} {'ratio':>6} {'cpu ms/login':>13} {'1-core /s':>10}")
        for user, password, label in (("master", PASSWORD, "master (SCRAM 4096 iter.)"), (FAST_USER, FAST_PASSWORD, f"{FAST_USER} (SCRAM 1 iter.)")):
            base = None
            for name in ("direct", "gateway-tls", "gateway"):
                conninfo, pid, _ = targets[name]
                conninfo = conninfo.replace(f"user={APP_USER}", f"user={user}")
                before = cpu_seconds(pid) if pid else 0.0
                run = pgbench(conninfo, "-C", "-S", "-T", str(args.connect_duration), "-c", "8", "-j", "2", "-n", password=password)
                used = cpu_seconds(pid) - before if pid else 0.0
                tps_match, done_match = TPS.search(run.stdout), DONE.search(run.stdout)
                if run.returncode or not tps_match or not done_match:
                    print(f"{label:<26} {name:<14} failed: {run.stderr.strip()[-300:]}")
                    continue
                rate = float(tps_match.group(1))
                base = base or rate
                if pid:
                    per_login = used / int(done_match.group(1))
                    extra = f"{per_login * 1e3:13.2f} {1 / per_login:10.0f}"
                else:
                    extra = f"{'-':>13} {'-':>10}"
                print(f"{label:<26} {name:<14} {rate:>9.0f} {rate / base:>6.2f} {extra}", flush=True)
    finally:
        if peers is not None:
            peers.stop()
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
