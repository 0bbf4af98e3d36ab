"""Probe: PostgreSQL IAM logins against password (SCRAM) logins, through the gateway and at the
engine, and where an IAM login's time goes. (``bench/iam_login.py`` is the benchmark of record
for both engines; this one takes the PostgreSQL login apart.)

Starts ``dbkeep up`` on a fresh state dir, one aurora-postgresql cluster with IAM database
authentication on, an IAM account ``iam_user`` (``GRANT rds_iam``), a SCRAM account with
PostgreSQL's 4096 iterations and one with 1 iteration (the connection path alone). Then:

1. ``pgbench -C -S`` (a new TLS connection per select, 8 clients) through the gateway for each
   account, the IAM one with a boto3 token as its password (valid 15 minutes, reused as
   clients may): logins per second, the gateway's CPU per login (the dbkeep process) and the
   engine's (the postmaster with its reaped backends, where the PAM module runs).
2. At the engine, without the gateway: N sequential logins on its private socket, IAM with the
   gateway's proof (PAM: dbkeep's module checks it in the backend) against SCRAM with 1 iteration,
   wall time per login: the difference is PAM and the proof check.

Not a test: it asserts nothing.

    .venv/bin/python bench/iam_login_pg_probe.py [--connect-duration 5] [--rounds 2] [--engine-logins 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "e2e"), str(ROOT / "bench")]

import boto3  # noqa: E402
import psycopg  # noqa: E402
from clusters import create_cluster, socket_of  # noqa: E402
from dbkeep_process import DbkeepProcess  # noqa: E402
from iam_login import pg_proof  # noqa: E402
from pg_gateway import DONE, TPS, cpu_seconds, pgbench  # noqa: E402

from dbkeep.engines import iam  # noqa: E402
from dbkeep.engines.layout import ClusterLayout  # noqa: E402
from dbkeep.engines.passwords import scram_sha256_verifier  # noqa: E402

PASSWORD = "Bench-Pass-123"
FAST_PASSWORD = "Bench-Fast-123"


def tree_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime: a process and its reaped descendants."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def postmaster_pid(run_dir: str) -> int:
    data = [p for p in Path(run_dir).parent.rglob("postmaster.pid")]
    return int(data[0].read_text().split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect-duration", type=int, default=5, help="seconds per pgbench -C run (default 5)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench clients (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per account, in mirrored order (default 2)")
    parser.add_argument("--engine-logins", type=int, default=300, help="sequential logins at the engine (default 300)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dbkeep-bench-iam-pg-"))
    os.chmod(work, 0o755)
    proc = DbkeepProcess(work / "state").start()
    try:
        cluster = create_cluster(proc, "aurora-postgresql", "bench-iam-pg", PASSWORD, EnableIAMDatabaseAuthentication=True)
        run_dir = os.path.dirname(socket_of(proc, cluster))
        iam_dir = iam.iam_dir(ClusterLayout(proc.state_dir, cluster["DbClusterResourceId"]))
        direct = f"host={run_dir} port=5432 user=master dbname=appdb"
        init = pgbench(direct, "-i", "-s", "1", "-q")
        if init.returncode:
            raise RuntimeError(init.stderr)
        fast = scram_sha256_verifier(FAST_PASSWORD, iterations=1)
        with psycopg.connect(direct, password=PASSWORD, autocommit=True) as m:
            for sql in ("CREATE USER iam_user", "GRANT rds_iam TO iam_user", f"CREATE ROLE bench_fast LOGIN PASSWORD '{fast}'",
                        "GRANT SELECT ON pgbench_accounts, pgbench_branches TO iam_user, bench_fast"):
                m.execute(sql)
        account = proc.client("sts").get_caller_identity()["Account"]
        client = proc.client("iam")
        client.create_user(UserName="bench")
        client.put_user_policy(UserName="bench", PolicyName="db", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rds-db:connect",
                                                    "Resource": f"arn:aws:rds-db:us-east-1:{account}:dbuser:"
                                                                f"{cluster['DbClusterResourceId']}/iam_user"}]}))
        key = client.create_access_key(UserName="bench")["AccessKey"]
        rds = boto3.client("rds", region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                           aws_secret_access_key=key["SecretAccessKey"])
        gateway = (f"host=localhost port={cluster['Port']} dbname=appdb sslmode=verify-full "
                   f"sslrootcert={proc.state_dir / 'ca.pem'}")
        gw_pid, pm_pid = proc.proc.pid, postmaster_pid(run_dir)  # type: ignore[union-attr]

        token = rds.generate_db_auth_token(DBHostname="localhost", Port=cluster["Port"], DBUsername="iam_user",
                                           Region="us-east-1")
        accounts = [("bench_fast (SCRAM 1 iter.)", "bench_fast", FAST_PASSWORD),
                    ("master (SCRAM 4096 iter.)", "master", PASSWORD), ("iam_user (IAM token)", "iam_user", token)]
        print(f"new TLS logins per second through the gateway: pgbench -C -S, {args.clients} clients, "
              f"{args.rounds} x {args.connect_duration} s in mirrored order (CPU ms per login: gateway = the dbkeep "
              "process, engine = the postmaster with its backends)")
        totals = {label: [0.0, 0, 0.0, 0.0] for label, _, _ in accounts}  # tps sum, logins, gateway s, engine s
        for round_ in range(args.rounds):
            for label, user, password in (accounts if round_ % 2 == 0 else accounts[::-1]):
                gw0, pm0 = cpu_seconds(gw_pid), tree_cpu(pm_pid)
                run = pgbench(f"{gateway} user={user}", "-C", "-S", "-T", str(args.connect_duration), "-c",
                              str(args.clients), "-j", "2", "-n", password=password)
                gw, pm = cpu_seconds(gw_pid) - gw0, tree_cpu(pm_pid) - pm0
                tps, done = TPS.search(run.stdout), DONE.search(run.stdout)
                if run.returncode or not tps or not done:
                    raise RuntimeError(f"{label}: {run.stderr.strip()[-300:]}")
                t = totals[label]
                t[0] += float(tps.group(1))
                t[1] += int(done.group(1))
                t[2] += gw
                t[3] += pm
        print(f"{'account':<28} {'logins/s':>9} {'ratio':>6} {'gateway ms':>11} {'engine ms':>10}")
        base = totals[accounts[0][0]][0] / args.rounds
        for label, (tps_sum, n, gw, pm) in totals.items():
            rate = tps_sum / args.rounds
            print(f"{label:<28} {rate:>9.0f} {rate / base:>6.2f} {gw / n * 1e3:>11.2f} {pm / n * 1e3:>10.2f}")

        print()
        print(f"at the engine (its unix socket, no TLS, no gateway): {args.engine_logins} sequential logins, "
              "wall ms per login")
        for label, connect in (
                ("SCRAM 1 iter.", lambda: psycopg.connect(f"host={run_dir} port=5432 user=bench_fast dbname=appdb",
                                                          password=FAST_PASSWORD)),
                ("IAM proof (PAM module)", lambda: psycopg.connect(
                    f"host={run_dir} port=5432 user=iam_user dbname=appdb", password=pg_proof(iam_dir, "iam_user")))):
            connect().close()
            pm0 = tree_cpu(pm_pid)
            t0 = time.perf_counter()
            for _ in range(args.engine_logins):
                connect().close()
            wall = (time.perf_counter() - t0) / args.engine_logins
            pm = (tree_cpu(pm_pid) - pm0) / args.engine_logins
            print(f"{label:<28} {wall * 1e3:>7.2f} ms wall, engine CPU {pm * 1e3:.2f} ms", flush=True)
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
