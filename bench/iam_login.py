"""Benchmark: IAM database logins per second through the gateway beside password logins.

Starts ``dbkeep up`` on a fresh state dir, creates one cluster with IAM database authentication
enabled, and in it two application accounts with the same privileges: ``bench_iam`` (an IAM
account: MariaDB ``IDENTIFIED WITH AWSAuthenticationPlugin``, PostgreSQL ``GRANT rds_iam``) and
``bench_pw`` (a password account). An IAM user whose policy allows ``rds-db:connect`` on
``bench_iam`` (an ``aws:SourceIp`` condition included, so the condition path is timed too)
signs one token with boto3's ``generate_db_auth_token`` and reuses it for the whole run, as AWS
advises (a token is good for 15 minutes).

Then, alternately for ``--rounds`` rounds, new logins for ``--seconds`` with ``--threads``
client threads: password logins, password logins with an auth switch (MariaDB only: the client
names a plugin the engine does not know, so the engine asks again -- the two extra round trips
an IAM login needs on each leg, without its token), then IAM logins (TLS + token + policy + the
engine's proof), each over verified TLS. Printed: logins per second of each kind, the IAM/password ratio, and
the CPU per login of each kind of the gateway (``/proc``: the ``dbkeep up`` process, which
runs the gateway), the engine (its reaped backends included) and the clients; the gateway's difference is what an IAM login costs the gateway beyond a password one
(token and policy verification, the extra auth round trip, the proof, one more audit event).

Clients. MariaDB: ``bench/login_load.c`` (compiled here with gcc), whose threads share one
OpenSSL context as connection pools do; it answers the gateway's switch to
``mysql_clear_password`` with the token. PostgreSQL: psycopg in ``--threads`` worker
processes, the token as the password and ``sslmode=verify-full`` (IAM logins to PostgreSQL
come with the PostgreSQL side of issue 11; until it is merged the IAM row fails and says so).

``--profile``: run ``dbkeep up`` under cProfile and print the functions where the gateway
spent its time during the IAM rounds (cumulative), to show where an IAM login's time goes.

Targets (issue 11): IAM logins >= 0.9x password logins, >= 500 IAM logins/s on MariaDB, token
and policy verification < 0.2 ms of CPU per login once warm (``bench/iam_token_verify.py``
times the verification alone). Everything runs on one machine: client, gateway and engine share
its cores. Not a test: it asserts nothing.

    .venv/bin/python bench/iam_login.py [--engine mysql|postgres] [--seconds 10] [--threads 8]
        [--rounds 2] [--profile]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e"), str(ROOT / "bench")]

from clusters import create_cluster  # noqa: E402
from dbkeep_process import DbkeepProcess  # noqa: E402
from iam_tokens import boto_token  # noqa: E402
from mysql_gateway import build_login_load, cpu_seconds  # noqa: E402

MASTER_PASSWORD = "Bench-Pass-1"
APP_PASSWORD = "Bench-App-Pass-2"
REGION = "us-east-1"


def setup(proc: DbkeepProcess, engine: str) -> tuple[dict, str]:
    """The cluster, its two accounts and the IAM user; returns (cluster, token)."""
    kind = "aurora-mysql" if engine == "mysql" else "aurora-postgresql"
    cluster = create_cluster(proc, kind, f"bench-iam-{engine[:2]}", MASTER_PASSWORD, EnableIAMDatabaseAuthentication=True)
    ca = str(proc.state_dir / "ca.pem")
    if engine == "mysql":
        import pymysql

        with pymysql.connect(host="localhost", port=cluster["Port"], user="admin", password=MASTER_PASSWORD,
                             ssl={"ca": ca, "check_hostname": True}, autocommit=True) as m, m.cursor() as cur:
            cur.execute("CREATE USER bench_iam IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
            cur.execute(f"CREATE USER bench_pw IDENTIFIED BY '{APP_PASSWORD}'")
            for user in ("bench_iam", "bench_pw"):
                cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON appdb.* TO {user}")
    else:
        import psycopg

        with psycopg.connect(host="localhost", port=cluster["Port"], user="master", password=MASTER_PASSWORD,
                             dbname="appdb", sslmode="verify-full", sslrootcert=ca, autocommit=True) as conn:
            conn.execute("CREATE USER bench_iam")
            conn.execute("GRANT rds_iam TO bench_iam")
            conn.execute(f"CREATE USER bench_pw PASSWORD '{APP_PASSWORD}'")
    account = proc.client("sts").get_caller_identity()["Account"]
    iam = proc.client("iam")
    iam.create_user(UserName="bench-db")
    iam.put_user_policy(UserName="bench-db", PolicyName="db", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "rds-db:connect",
            "Resource": f"arn:aws:rds-db:{REGION}:{account}:dbuser:{cluster['DbClusterResourceId']}/bench_iam",
            "Condition": {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}}]}))
    key = iam.create_access_key(UserName="bench-db")["AccessKey"]
    token = boto_token("localhost", cluster["Port"], "bench_iam", key["AccessKeyId"], key["SecretAccessKey"])
    return cluster, token


def engine_pid(state: Path, engine: str) -> int | None:
    """The cluster's engine (mariadbd, or PostgreSQL's postmaster) under this state dir."""
    name = "mariadbd" if engine == "mysql" else "postgres"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if Path(argv[0].decode(errors="replace")).name == name and str(state).encode() in b" ".join(argv):
            if engine == "mysql" or Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].decode(
                    errors="replace").rsplit("/", 1)[-1] != "postgres":
                return int(entry.name)
    return None


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mysql_logins(binary: Path, port: int, ca: str, user: str, password: str, threads: int,
                 seconds: float, switch: bool = False) -> tuple[int, float]:
    done = subprocess.run([str(binary), "--host=127.0.0.1", f"--port={port}", f"--ca={ca}", "--verify-host=localhost",
                           f"--user={user}", "--database=appdb", f"--threads={threads}", f"--seconds={seconds}",
                           *(["--switch"] if switch else [])],
                          env={**os.environ, "MYSQL_PWD": password}, capture_output=True, text=True,
                          timeout=seconds + 60, check=False)
    m = re.search(r"logins=(\d+) failures=(\d+) seconds=([\d.]+)", done.stdout)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"login_load as {user} failed ({done.returncode}): {done.stdout.strip()} {done.stderr.strip()}")
    if int(m.group(2)):  # on a machine this busy a login may miss login_load's 5 s I/O timeout
        print(f"  ({user}{' --switch' if switch else ''}: {m.group(2)} failed logins; {done.stderr.strip()})")
    return int(m.group(1)), float(m.group(3))


def _pg_worker(args: tuple) -> int:
    import psycopg

    port, ca, user, password, seconds = args
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        psycopg.connect(host="localhost", port=port, user=user, password=password, dbname="appdb",
                        sslmode="verify-full", sslrootcert=ca, connect_timeout=10).close()
        n += 1
    return n


def pg_logins(port: int, ca: str, user: str, password: str, threads: int, seconds: float) -> tuple[int, float]:
    start = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(threads) as pool:
        try:
            counts = pool.map(_pg_worker, [(port, ca, user, password, seconds)] * threads)
        except Exception as exc:  # noqa: BLE001 - psycopg's error, from a worker
            raise RuntimeError(f"psycopg login as {user} failed: {exc}") from None
    return sum(counts), time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("mysql", "postgres"), default="mysql")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="run dbkeep up under cProfile; print where IAM logins spend")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dbkeep-bench-iam-"))
    state = workdir / "state"
    profile_out = workdir / "dbkeep.prof"
    profiler = ["-m", "cProfile", "-o", str(profile_out)] if args.profile else []
    proc = DbkeepProcess(state, interpreter_args=profiler).start(timeout=120)
    results: dict[str, list[tuple[int, float, float, float, float]]] = {"password": [], "switch": [], "iam": []}
    try:
        cluster, token = setup(proc, args.engine)
        port, ca = cluster["Port"], str(state / "ca.pem")
        binary = build_login_load(workdir) if args.engine == "mysql" else None
        pid = proc.proc.pid  # type: ignore[union-attr]

        engine = engine_pid(state, args.engine)

        def run(user: str, password: str, seconds: float, switch: bool = False) -> tuple[int, float, float, float, float]:
            before, client_before = cpu_seconds(pid), children_cpu_seconds()
            engine_before = cpu_seconds(engine, reaped_children=True)
            if binary is not None:
                n, elapsed = mysql_logins(binary, port, ca, user, password, args.threads, seconds, switch)
            else:
                n, elapsed = pg_logins(port, ca, user, password, args.threads, seconds)
            return (n, elapsed, cpu_seconds(pid) - before, cpu_seconds(engine, reaped_children=True) - engine_before,
                    children_cpu_seconds() - client_before)

        run("bench_pw", APP_PASSWORD, 2)  # warm up both paths (TLS sessions, caches, the engine's threads)
        try:
            run("bench_iam", token, 2)
        except RuntimeError as exc:
            print(f"IAM logins fail on this build: {exc}")
            return 1
        for _ in range(args.rounds):
            results["password"].append(run("bench_pw", APP_PASSWORD, args.seconds))
            if binary is not None:  # the IAM login's round trips without its token (login_load --switch)
                results["switch"].append(run("bench_pw", APP_PASSWORD, args.seconds, switch=True))
            results["iam"].append(run("bench_iam", token, args.seconds))
    finally:
        trouble = [line for line in proc.logs().splitlines() if "Traceback" in line or "internal error" in line]
        proc.stop()  # SIGTERM: dbkeep up exits cleanly and cProfile writes its file
        if trouble:
            print(f"dbkeep up logged {len(trouble)} errors, the first: {trouble[0]}")

    print(f"{args.engine}: new TLS logins through the gateway, {args.threads} client threads, "
          f"{args.rounds} x {args.seconds:g} s each (one machine, {os.cpu_count()} cores)")
    rates = {}
    labels = {"password": "password (TLS)", "switch": "password + auth switch", "iam": "IAM (TLS + token + policy)"}
    for kind, runs in results.items():
        if not runs:
            continue
        logins = sum(r[0] for r in runs)
        elapsed = sum(r[1] for r in runs)
        cpu, engine_cpu, client_cpu = (sum(r[i] for r in runs) / logins * 1e3 for i in (2, 3, 4))
        rates[kind] = (logins / elapsed, cpu)
        print(f"  {labels[kind]:28} {rates[kind][0]:8.1f} logins/s   CPU ms/login: gateway {cpu:.3f}, engine "
              f"{engine_cpu:.3f}, clients {client_cpu:.3f} (rounds: {', '.join(f'{r[0] / r[1]:.0f}/s' for r in runs)})")
    ratio = rates["iam"][0] / rates["password"][0]
    extra = rates["iam"][1] - rates["password"][1]
    print(f"  IAM / password: {ratio:.2f}x (target >= 0.9x)" +
          (f"; IAM logins/s {rates['iam'][0]:.0f} (target >= 500)" if args.engine == "mysql" else ""))
    print(f"  gateway CPU an IAM login costs beyond a password login: {extra:.3f} ms "
          f"(verification alone: bench/iam_token_verify.py; target < 0.2 ms)")
    if "switch" in rates:
        print(f"  ... beyond a password login with the same round trips (an auth switch): "
              f"{rates['iam'][1] - rates['switch'][1]:.3f} ms; IAM / password + switch: "
              f"{rates['iam'][0] / rates['switch'][0]:.2f}x")
    if args.profile and profile_out.exists():
        print("\nwhere dbkeep up spent its CPU (whole run, cumulative; IAM lines first):")
        stats = pstats.Stats(str(profile_out))
        stats.sort_stats("cumulative").print_stats(r"iam|dbauth|engine_proof|policy|relay\.py|mysql\.py|postgres\.py", 25)
    shutil.rmtree(workdir, ignore_errors=True)  # the engine's data: hundreds of MB
    return 0


if __name__ == "__main__":
    sys.exit(main())
