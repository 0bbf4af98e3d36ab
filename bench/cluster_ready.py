"""Benchmark: median time from CreateDBCluster + CreateDBInstance to the first successful login.

Starts ``dbkeep up`` on a fresh state dir, creates N clusters of each engine with boto3, and
times each one until the master user's first successful login through the gateway with verified
TLS (polling every 50 ms). Prints the
median and the spread per engine. Aim (issue 3): under 5 seconds. Not a test: it asserts nothing.

    .venv/bin/python bench/cluster_ready.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from clusters import mysql, postgres, socket_of  # noqa: E402
from dbkeep_process import DbkeepProcess  # noqa: E402


def first_login(proc: DbkeepProcess, engine: str, ident: str, password: str) -> float:
    rds = proc.client("rds")
    user = "admin" if engine == "aurora-mysql" else "master"
    start = time.perf_counter()
    cluster = rds.create_db_cluster(DBClusterIdentifier=ident, Engine=engine, MasterUsername=user, MasterUserPassword=password,
                                    DatabaseName="appdb")["DBCluster"]
    rds.create_db_instance(DBInstanceIdentifier=f"{ident}-1", DBClusterIdentifier=ident, Engine=engine, DBInstanceClass="db.r6g.large")
    deadline = start + 120
    while time.perf_counter() < deadline:
        try:
            if engine == "aurora-mysql":
                mysql(proc, cluster, user, password, "appdb").close()
            else:
                postgres(proc, cluster, user, password).close()
            return time.perf_counter() - start
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{ident}: no login within 120 s; socket {socket_of(proc, cluster)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    proc = DbkeepProcess(Path(tempfile.mkdtemp(prefix="dbkeep-bench-")) / "state").start()
    try:
        for engine in ("aurora-mysql", "aurora-postgresql"):
            times = [first_login(proc, engine, f"bench-{engine[7:9]}-{i}", "Bench-Pass-1") for i in range(args.runs)]
            print(f"{engine:18} create->first login: median {statistics.median(times):.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)}; aim < 5 s)")
    finally:
        proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
