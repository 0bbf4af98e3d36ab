"""Benchmark: the MySQL gateway against a direct unix-socket connection and HAProxy (TCP mode).

Starts ``dbkeep up`` on a fresh state dir, creates one aurora-mysql cluster, prepares sysbench's
tables over the engine's socket, then runs ``sysbench oltp_point_select`` for ``--time`` seconds
at 1, 8 and 32 threads against:

- ``direct``: the engine's own unix socket (no gateway);
- ``haproxy``: HAProxy 2.x in TCP mode on 127.0.0.1 in front of the same socket (a pure relay,
  its default threading);
- ``gateway``: the cluster endpoint, cleartext;
- ``gateway-tls``: the cluster endpoint over TLS (``--mysql-ssl=on``; libmariadb's TLS, the
  server certificate from dbkeep's CA);
- ``gateway+metrics``: the ``gateway`` row while ``/metrics`` is scraped every second (issue 13:
  metrics must not move the gateway's throughput);
- ``gateway-master`` and ``gateway-tls-master``: the same as the master user, whose statements
  the gateway inspects (gateway/mysql/inspect.py); the other rows log in as ``bench_app``, an
  application account with DML on ``appdb`` only, whose sessions the native relay carries.
  The ``inspected/uninspected`` lines compare them (issue 12's target: at least 0.9x with
  prepared statements, 0.7x with ``--ps-mode disable``); ``--ps-mode auto,disable`` runs both.

Then new connections per second (connect, log in, quit) with a small sysbench Lua loop, directly
and through the gateway (cleartext and TLS), and new TLS logins per second with
``bench/login_load.c`` (compiled here with gcc): a C client whose threads share one OpenSSL
context, as connection pools do. libmariadb (sysbench) builds a new context per connection, which
costs its client about 2 ms of CPU per login with OpenSSL 3, on the same two cores as the gateway
and the engine; the lean client leaves those cores to the server side. Both figures are printed,
with each process's CPU per login. Everything runs on the same machine in one run; the figures
are ratios against ``direct``. Targets (issue 4): gateway >= HAProxy at 8 and 32 clients and >= 500
new TLS logins per second. Not a test: it asserts nothing.

    .venv/bin/python bench/mysql_gateway.py [--time 10] [--threads 1,8,32] [--rounds 2] [--ps-mode auto[,disable]]
        [--modes direct,haproxy,gateway,gateway-tls,gateway-master,gateway-tls-master] [--no-logins]

Issue 12's inspected/uninspected runs alone, prepared and text protocol:

    .venv/bin/python bench/mysql_gateway.py --threads 8,32 --ps-mode auto,disable --no-logins \
        --modes gateway,gateway-master,gateway-tls,gateway-tls-master
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from clusters import create_cluster, socket_of  # noqa: E402
from dbkeep_process import DbkeepProcess  # noqa: E402
from scrape import scraping  # noqa: E402

PASSWORD = "Bench-Pass-1"
TABLES, TABLE_SIZE = 4, 10000
CONNECT_LUA = """
function thread_init()
  drv = sysbench.sql.driver()
end
function event()
  local con = drv:connect()
  con:disconnect()
end
"""
_TPS = re.compile(r"transactions:\s+\d+\s+\(([\d.]+) per sec")
_EVENTS = re.compile(r"total number of events:\s+(\d+)")
_TOTAL_TIME = re.compile(r"total time:\s+([\d.]+)s")


def cpu_seconds(pid: int | None, *, reaped_children: bool = False) -> float:
    """User + system CPU time of a process so far (0 when there is no such process), with
    ``reaped_children`` that of its children it has waited for too (PostgreSQL's backends)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15 if reaped_children else 13]) / os.sysconf("SC_CLK_TCK")


def engine_pid(socket_path: str) -> int | None:
    """The pid of the mariadbd serving ``socket_path`` (its command line names the cluster's directory)."""
    cluster_dir = str(Path(socket_path).parents[1]).encode() + b"/"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"mariadbd" in cmdline.split(b"\0")[0] and cluster_dir in cmdline:
                return int(entry.name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_files(workdir: Path, ca: Path) -> None:
    """sysbench 1.0's --mysql-ssl=on loads client-key.pem, client-cert.pem and cacert.pem from
    the current directory: a throwaway self-signed client pair and dbkeep's CA."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(workdir / "client-key.pem"), "-out", str(workdir / "client-cert.pem"), "-days", "2",
                    "-subj", "/CN=sysbench"], check=True, capture_output=True)
    shutil.copy(ca, workdir / "cacert.pem")


APP_USER = "bench_app"


def as_user(user: str) -> list[str]:
    return [f"--mysql-user={user}", f"--mysql-password={PASSWORD}"]


def sysbench(workdir: Path, target: list[str], args: list[str], timeout: float) -> str:
    if not any(a.startswith("--mysql-user=") for a in target):
        target = [*target, *as_user("admin")]
    cmd = ["sysbench", *args[:1], "--mysql-db=appdb", "--db-driver=mysql", *target, *args[1:]]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def point_select(workdir: Path, target: list[str], threads: int, seconds: int, ps_mode: str = "auto") -> float:
    out = sysbench(workdir, target, ["oltp_point_select", f"--tables={TABLES}", f"--table_size={TABLE_SIZE}",
                                     f"--threads={threads}", f"--time={seconds}", "--report-interval=0",
                                     f"--db-ps-mode={ps_mode}", "run"],
                   timeout=seconds + 60)
    m = _TPS.search(out)
    if not m:
        raise RuntimeError(f"no tps in sysbench output:\n{out}")
    return float(m.group(1))


def connections_per_second(workdir: Path, target: list[str], threads: int, seconds: int) -> float:
    script = workdir / "connect.lua"
    script.write_text(CONNECT_LUA)
    out = sysbench(workdir, target, [str(script), f"--threads={threads}", f"--time={seconds}", "run"], timeout=seconds + 60)
    events, total = _EVENTS.search(out), _TOTAL_TIME.search(out)
    if not events or not total:
        raise RuntimeError(f"no event count in sysbench output:\n{out}")
    return int(events.group(1)) / float(total.group(1))


def build_login_load(workdir: Path) -> Path:
    """Compile bench/login_load.c (needs gcc and libssl-dev, as the C extension does)."""
    binary = workdir / "login_load"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(ROOT / "bench" / "login_load.c"),
                    "-lssl", "-lcrypto", "-lpthread"], check=True)
    return binary


def lean_logins(binary: Path, target: list[str], threads: int, seconds: int) -> tuple[float, float]:
    """(TLS logins per second, client CPU seconds per login) with the shared-context C client."""
    before = os.times()
    done = subprocess.run([str(binary), *target, "--user=admin", "--database=appdb", f"--threads={threads}",
                           f"--seconds={seconds}"], env={**os.environ, "MYSQL_PWD": PASSWORD},
                          capture_output=True, text=True, timeout=seconds + 60, check=False)
    after = os.times()
    m = re.search(r"logins=(\d+) failures=(\d+) seconds=([\d.]+)", done.stdout)
    if done.returncode != 0 or not m:
        raise RuntimeError(f"login_load failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    logins = int(m.group(1))
    client_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return logins / float(m.group(3)), client_cpu / logins


def start_haproxy(workdir: Path, engine_socket: str, port: int) -> subprocess.Popen[bytes]:
    # HAProxy takes socket paths of at most 97 bytes: reach the engine's through a short symlink
    link = Path(tempfile.mkdtemp(prefix="hp-", dir="/tmp")) / "engine.sock"
    link.symlink_to(engine_socket)
    engine_socket = str(link)
    config = workdir / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend mysql
    bind 127.0.0.1:{port}
    default_backend engine
backend engine
    server engine unix@{engine_socket}
""")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    _, err = proc.communicate()
    raise RuntimeError(f"haproxy did not start: {err.decode(errors='replace')[-2000:]}")


def create_app_user(engine_socket: str) -> None:
    """``bench_app``: DML on appdb only, so the gateway does not inspect its sessions."""
    sql = (f"CREATE USER IF NOT EXISTS {APP_USER}@'%' IDENTIFIED BY '{PASSWORD}'; "
           f"GRANT SELECT, INSERT, UPDATE, DELETE ON appdb.* TO {APP_USER}@'%'")
    subprocess.run(["mariadb", f"--socket={engine_socket}", "--user=admin", "--skip-ssl", "appdb", "-e", sql],
                   env={**os.environ, "MYSQL_PWD": PASSWORD}, check=True, capture_output=True, timeout=60)


def sysbench_table(workdir: Path, args: argparse.Namespace, modes: list[str], threads: list[int],
                   targets: dict[str, list[str]], relay_pid: dict[str, int | None], proc: Any, ps_mode: str) -> None:
    """oltp_point_select for every mode and thread count (mirrored rounds), the ratios, the table."""
    print(f"sysbench oltp_point_select (--db-ps-mode={ps_mode}), {TABLES} tables x {TABLE_SIZE} rows, {args.time} s "
          f"per run, mean of {args.rounds} mirrored rounds, {os.cpu_count()} CPUs; as {APP_USER} unless -master",
          flush=True)
    results: dict[tuple[str, int], float] = {}
    for n in threads:
        runs: dict[str, list[float]] = {mode: [] for mode in modes}
        used: dict[str, float] = dict.fromkeys(modes, 0.0)
        for round_ in range(args.rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                before = cpu_seconds(relay_pid.get(mode))
                with scraping(proc.url if mode.endswith("+metrics") else None):
                    runs[mode].append(point_select(workdir, targets[mode], n, args.time, ps_mode))
                used[mode] += cpu_seconds(relay_pid.get(mode)) - before
        for mode in modes:
            results[mode, n] = sum(runs[mode]) / len(runs[mode])
            queries = sum(runs[mode]) * args.time
            cost = f"  (relay CPU {used[mode] / queries * 1e6:.0f} us/query)" if mode in relay_pid else ""
            each = " ".join(f"{tps:.0f}" for tps in runs[mode])
            print(f"  {mode:12} {n:3} threads: {results[mode, n]:9.0f} tps{cost}  runs {each}", flush=True)
    print()
    target = 0.9 if ps_mode == "auto" else 0.7
    for n in threads:
        if "gateway" in modes and "gateway+metrics" in modes:
            print(f"  scraped/unscraped at {n:2} threads (gateway+metrics / gateway): "
                  f"{results['gateway+metrics', n] / results['gateway', n]:.2f}x")
        for plain, inspected in (("gateway", "gateway-master"), ("gateway-tls", "gateway-tls-master")):
            if plain in modes and inspected in modes:
                print(f"  inspected/uninspected at {n:2} threads, --db-ps-mode={ps_mode} ({inspected} / {plain}): "
                      f"{results[inspected, n] / results[plain, n]:.2f}x (target >= {target:.1f}x)")
    header = f"{'threads':>7} " + " ".join(f"{m:>20}" for m in modes)
    print(header)
    for n in threads:
        base_tps = results.get(("direct", n))
        cells = []
        for mode in modes:
            tps = results[mode, n]
            ratio = f" ({tps / base_tps:.2f}x)" if base_tps else ""
            cells.append(f"{tps:>11.0f}{ratio:>9}")
        print(f"{n:>7} " + " ".join(cells))
    if "haproxy" in modes:
        for n in threads:
            if n > 1:
                h = results["haproxy", n]
                verdicts = ", ".join(f"{m} {results[m, n] / h:.2f}x" for m in ("gateway", "gateway-tls") if m in modes)
                print(f"  vs haproxy at {n:2} threads: {verdicts} (target >= 1.00x)")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=int, default=10, help="seconds per sysbench run (default 10)")
    parser.add_argument("--threads", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per mode and thread count, in mirrored order (A..D, D..A) so that background "
                             "load on a shared machine falls on every mode alike; the mean is reported (default 2)")
    parser.add_argument("--modes", default="direct,haproxy,gateway,gateway+metrics,gateway-tls,gateway-master,gateway-tls-master")
    parser.add_argument("--ps-mode", default="auto",
                        help="sysbench --db-ps-mode, or several separated by commas: auto (prepared statements, the "
                             "default), disable (text protocol)")
    parser.add_argument("--no-logins", action="store_true", help="skip the new-connection and TLS-login rates")
    parser.add_argument("--connect-time", type=int, default=5, help="seconds per connection-rate run (default 5)")
    parser.add_argument("--connect-threads", type=int, default=8)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    modes = args.modes.split(",")
    ps_modes = args.ps_mode.split(",")
    if not set(ps_modes) <= {"auto", "disable"}:
        parser.error("--ps-mode: auto, disable or both")

    base = Path(tempfile.mkdtemp(prefix="dbkeep-bench-mysql-"))
    workdir = base / "work"
    workdir.mkdir()
    proc = DbkeepProcess(base / "state").start()
    haproxy = None
    try:
        cluster = create_cluster(proc, "aurora-mysql", "bench-mysql", PASSWORD)
        engine_socket = socket_of(proc, cluster)
        client_files(workdir, proc.state_dir / "ca.pem")
        direct = [f"--mysql-socket={engine_socket}"]
        gateway = ["--mysql-host=127.0.0.1", f"--mysql-port={cluster['Port']}"]
        app = as_user(APP_USER)
        sysbench(workdir, direct, ["oltp_point_select", f"--tables={TABLES}", f"--table_size={TABLE_SIZE}",
                                   "--threads=4", "prepare"], timeout=300)
        create_app_user(engine_socket)
        targets = {"direct": [*direct, *app], "gateway": [*gateway, *app], "gateway+metrics": [*gateway, *app],
                   "gateway-tls": [*gateway, "--mysql-ssl=on", *app],
                   "gateway-master": gateway, "gateway-tls-master": [*gateway, "--mysql-ssl=on"]}
        if "haproxy" in modes:
            port = free_port()
            haproxy = start_haproxy(workdir, engine_socket, port)
            targets["haproxy"] = ["--mysql-host=127.0.0.1", f"--mysql-port={port}", *app]

        relay_pid = {"haproxy": haproxy.pid if haproxy else None, "gateway": proc.proc.pid, "gateway+metrics": proc.proc.pid,
                     "gateway-tls": proc.proc.pid,
                     "gateway-master": proc.proc.pid, "gateway-tls-master": proc.proc.pid}
        for ps_mode in ps_modes:
            sysbench_table(workdir, args, modes, threads, targets, relay_pid, proc, ps_mode)
        if args.no_logins:
            return 0

        print(f"\nnew connections per second (connect, log in, quit; {args.connect_threads} client threads, "
              f"{args.connect_time} s)")
        rates = {}
        for mode in ("direct", "gateway", "gateway-tls"):
            before = cpu_seconds(relay_pid.get(mode))
            rates[mode] = connections_per_second(workdir, targets[mode], args.connect_threads, args.connect_time)
            used = cpu_seconds(relay_pid.get(mode)) - before
            cost = ""
            if mode in relay_pid:
                per_login = used / (rates[mode] * args.connect_time)
                cost = f"; gateway CPU {per_login * 1e3:.2f} ms/login = {1 / per_login:.0f} logins/s per core"
            print(f"  {mode:12} {rates[mode]:7.0f}/s ({rates[mode] / rates['direct']:.2f}x direct){cost}", flush=True)
        print(f"  TLS logins through the gateway: {rates['gateway-tls']:.0f}/s (target >= 500/s); the client (libmariadb "
              f"via sysbench, a new OpenSSL context per connection) and the engine share the same {os.cpu_count()} CPUs")

        binary = build_login_load(workdir)
        ca = str(proc.state_dir / "ca.pem")
        lean_targets = {
            "direct-tls": [f"--socket={engine_socket}"],  # the engine's own TLS on its unix socket
            "gateway-tls1.3": ["--host=127.0.0.1", f"--port={cluster['Port']}", f"--ca={ca}", "--verify-host=localhost"],
            "gateway-tls1.2": ["--host=127.0.0.1", f"--port={cluster['Port']}", f"--ca={ca}", "--verify-host=localhost",
                               "--tls-max=1.2"],
        }
        print(f"\nnew TLS logins per second, lean client (bench/login_load.c: one shared OpenSSL context, "
              f"{args.connect_threads} threads, {args.connect_time} s, mysql_native_password, verify-full)")
        lean = {}
        mariadb = engine_pid(engine_socket)
        for mode, target in lean_targets.items():
            pids = {"gateway": proc.proc.pid, "engine": mariadb}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            lean[mode], client_cost = lean_logins(binary, target, args.connect_threads, args.connect_time)
            logins = lean[mode] * args.connect_time
            costs = [f"client {client_cost * 1e3:.2f}"]
            for name, pid in pids.items():
                if name == "gateway" and mode.startswith("direct"):
                    continue
                costs.append(f"{name} {(cpu_seconds(pid) - before[name]) / logins * 1e3:.2f}")
            print(f"  {mode:15} {lean[mode]:7.0f}/s ({lean[mode] / lean['direct-tls']:.2f}x direct); CPU ms/login: "
                  f"{', '.join(costs)}", flush=True)
        print(f"  TLS logins through the gateway: {lean['gateway-tls1.3']:.0f}/s with TLS 1.3, "
              f"{lean['gateway-tls1.2']:.0f}/s with TLS 1.2 (target >= 500/s)")
    finally:
        if haproxy is not None:
            haproxy.terminate()
            try:
                haproxy.wait(10)
            except subprocess.TimeoutExpired:
                haproxy.kill()
        proc.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
