"""Benchmark: inspected against uninspected PostgreSQL sessions through the gateway (issue 12).

Starts ``dbkeep up`` on a fresh state dir, creates one aurora-postgresql cluster, initialises
pgbench (scale 1) as an application role and runs ``pgbench -S`` (select-only) through the
gateway (cleartext) as the master user (CREATEROLE, member of rds_superuser: every statement is
read by the statement guard) and as the application role (not inspected: the native relay),
for ``-M simple`` and ``-M prepared`` at 8 and 32 clients, in mirrored order, and prints the
inspected/uninspected ratio. Targets: at least 0.9x prepared and 0.7x simple.

Not a test: it asserts nothing.

    .venv/bin/python bench/pg_guard.py [--duration 10] [--clients 8,32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from clusters import create_cluster, socket_of  # noqa: E402
from dbkeep_process import DbkeepProcess  # noqa: E402
from pg_gateway import PASSWORD, PG_BIN, TPS, pgbench  # noqa: E402

APP_USER = "bench_app"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run (default 10)")
    parser.add_argument("--clients", default="8,32", help="client counts (default 8,32)")
    parser.add_argument("--rounds", type=int, default=2, help="mirrored rounds per row (default 2)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbkeep-bench-pgguard-"))
    os.chmod(work, 0o755)
    proc = DbkeepProcess(work / "state").start()
    try:
        cluster = create_cluster(proc, "aurora-postgresql", "bench-guard", PASSWORD)
        direct = f"host={os.path.dirname(socket_of(proc, cluster))} port=5432 user=master dbname=appdb"
        subprocess.run([str(PG_BIN / "psql"), direct, "-q", "-c", f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{PASSWORD}'",
                        "-c", f"GRANT CREATE ON SCHEMA public TO {APP_USER}"],
                       check=True, capture_output=True, env={**os.environ, "PGPASSWORD": PASSWORD})
        gateway = f"host=localhost port={cluster['Port']} dbname=appdb sslmode=disable"
        init = pgbench(f"{gateway} user={APP_USER}", "-i", "-s", "1", "-q")
        if init.returncode:
            raise RuntimeError(init.stderr)
        subprocess.run([str(PG_BIN / "psql"), direct.replace("user=master", f"user={APP_USER}"), "-q", "-c",
                        "GRANT SELECT ON pgbench_accounts, pgbench_branches TO master"],
                       check=True, capture_output=True, env={**os.environ, "PGPASSWORD": PASSWORD})
        rows = [(mode, n) for mode in ("prepared", "simple") for n in (int(c) for c in args.clients.split(","))]
        results: dict[tuple[str, int, str], list[float]] = {}
        users = ["master", APP_USER]
        for r in range(args.rounds):
            for who in (users if r % 2 == 0 else users[::-1]):
                for mode, n in rows:
                    run = pgbench(f"{gateway} user={who}", "-S", "-n", "-M", mode, "-c", str(n), "-j", "2",
                                  "-T", str(args.duration))
                    match = TPS.search(run.stdout)
                    if run.returncode or not match:
                        print(f"{who} {mode} {n}: failed: {run.stderr.strip()[-300:]}")
                        continue
                    results.setdefault((mode, n, who), []).append(float(match.group(1)))
        print(f"{'mode':<9} {'clients':>7} {'master (inspected)':>19} {'app (not)':>10} {'ratio':>6}")
        for mode, n in rows:
            inspected, plain = results.get((mode, n, "master")), results.get((mode, n, APP_USER))
            if not inspected or not plain:
                continue
            a, b = sum(inspected) / len(inspected), sum(plain) / len(plain)
            print(f"{mode:<9} {n:>7} {a:>19.0f} {b:>10.0f} {a / b:>6.2f}", flush=True)
    finally:
        proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
