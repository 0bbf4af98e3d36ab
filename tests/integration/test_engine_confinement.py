"""Engines are confined to their own cluster's directories (Landlock, engines/confine.py).

Each test gives the engine every power on purpose: it works as rdsadmin (MariaDB: every
privilege, FILE and SUPER included; PostgreSQL: superuser), and the targets outside the cluster
are made so that file permissions alone would let the engine's OS user in (a world-writable
directory in the system's temporary directory, a world-writable directory beside the cluster's
own, a world-readable file named like the catalog at the top of the state directory). Only
the confinement stands in the way: the writes and reads fail and no file appears. The same
operations inside the cluster's own directories still work, so a test fails if confinement is
off (or too tight for the engine to use its own directories).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dbkeep.engines import confine
from dbkeep.errors import DbError
from engine_clients import pg_connect, pg_rows

pytestmark = [pytest.mark.engines,
              pytest.mark.skipif(not confine.probe(kernel_only=True).available, reason="the kernel has no usable Landlock")]

SECRET = "catalog-secret-" + secrets.token_hex(8)


class Targets:
    """Places outside the cluster that file permissions would let any OS user write or read."""

    def __init__(self, state_dir: Path) -> None:
        tag = secrets.token_hex(4)
        self.tmp = Path(tempfile.mkdtemp(prefix="dbk-confine-"))
        os.chmod(self.tmp, 0o777)
        # a sibling cluster directory, wide open
        self.other = state_dir / "clusters" / f"cluster-CONFINE0OTHER{tag}"
        (self.other / "data").mkdir(parents=True)
        for d in (self.other, self.other / "data"):
            os.chmod(d, 0o777)
        # the state directory's catalog, readable by all (as it was before it was made 0600)
        self.catalog = state_dir / "catalog.sqlite3"
        self.catalog.write_text(SECRET + "\n")
        os.chmod(self.catalog, 0o644)
        self.writable = [self.tmp, self.other / "data"]

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.other, ignore_errors=True)
        self.catalog.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return [p for d in self.writable for p in d.rglob("*")]


@pytest.fixture
def targets(engines):
    t = Targets(engines.state_dir)
    yield t
    t.close()


def _refused(fn, *args) -> DbError:
    try:
        fn(*args)
    except DbError as exc:
        return exc
    raise AssertionError(f"not refused: {args}")


# --- MariaDB ----------------------------------------------------------------------------------

def _my_log_to(cluster, variable: str, switch: str, path: Path) -> DbError | None:
    """Point a log file variable at ``path`` and switch the log on; the error, if any."""
    try:
        cluster.rdsadmin(f"SET GLOBAL {variable} = %s", (str(path),))
        cluster.rdsadmin(f"SET GLOBAL {switch} = ON")
        cluster.rdsadmin("SELECT SLEEP(0.2), 'confinement probe'")
        cluster.rdsadmin("FLUSH LOGS")
        return None
    except DbError as exc:
        return exc
    finally:
        with contextlib.suppress(DbError):
            cluster.rdsadmin(f"SET GLOBAL {switch} = OFF")


def test_mariadb_logs_only_in_its_own_directory(mysql_cluster, targets):
    cluster = mysql_cluster
    default = cluster.rdsadmin("SELECT @@global.general_log_file, @@global.slow_query_log_file")[0]
    try:
        for variable, switch in (("general_log_file", "general_log"), ("slow_query_log_file", "slow_query_log")):
            for directory in targets.writable:
                err = _my_log_to(cluster, variable, switch, directory / f"{variable}.log")
                assert err is not None, f"{variable} in {directory} was accepted"
            cluster.rdsadmin("SET GLOBAL long_query_time = 0")
            own = cluster.layout.log / f"confined-{variable}.log"
            assert _my_log_to(cluster, variable, switch, own) is None
            assert own.exists() and "confinement probe" in own.read_text(errors="replace")
        assert targets.files() == []
    finally:
        cluster.rdsadmin("SET GLOBAL long_query_time = 10")
        cluster.rdsadmin("SET GLOBAL general_log_file = %s, GLOBAL slow_query_log_file = %s", default)


def test_mariadb_files_only_in_its_own_directory(mysql_cluster, targets):
    cluster = mysql_cluster
    cluster.rdsadmin("CREATE DATABASE IF NOT EXISTS confine_probe")
    try:
        for directory in targets.writable:
            _refused(cluster.rdsadmin, f"SELECT 'x' INTO OUTFILE '{directory / 'outfile.txt'}'")
            _refused(cluster.rdsadmin, f"SELECT 'x' INTO DUMPFILE '{directory / 'dumpfile.bin'}'")
            # not subject to secure_file_priv: the engine itself would write there
            _refused(cluster.rdsadmin, "CREATE TABLE confine_probe.t_out (a INT) ENGINE=InnoDB "
                                       f"DATA DIRECTORY = '{directory}'")
        assert cluster.rdsadmin(f"SELECT LOAD_FILE('{targets.catalog}')") == [(None,)]
        cluster.rdsadmin("CREATE TABLE confine_probe.loaded (line TEXT)")
        _refused(cluster.rdsadmin, f"LOAD DATA INFILE '{targets.catalog}' INTO TABLE confine_probe.loaded")
        assert cluster.rdsadmin("SELECT COUNT(*) FROM confine_probe.loaded") == [(0,)]
        assert targets.files() == []
        # inside its own directories the same statements work
        own = cluster.layout.run / f"outfile-{secrets.token_hex(4)}.txt"
        cluster.rdsadmin(f"SELECT 'inside' INTO OUTFILE '{own}'")
        assert own.read_text().strip() == "inside"
        assert cluster.rdsadmin(f"SELECT LOAD_FILE('{own}')") == [(b"inside\n",)] or \
            cluster.rdsadmin(f"SELECT CAST(LOAD_FILE('{own}') AS CHAR)") == [("inside\n",)]
        inside = cluster.layout.run / "tablespaces"
        cluster.rdsadmin(f"CREATE TABLE confine_probe.t_in (a INT) ENGINE=InnoDB DATA DIRECTORY = '{inside}'")
        cluster.rdsadmin("INSERT INTO confine_probe.t_in VALUES (1)")
        assert list(inside.rglob("t_in.ibd"))
    finally:
        cluster.rdsadmin("DROP DATABASE IF EXISTS confine_probe")
        for p in cluster.layout.run.glob("outfile-*.txt"):
            p.unlink()


# --- PostgreSQL -------------------------------------------------------------------------------

def test_postgres_superuser_files_only_in_its_own_directory(pg_cluster, targets):
    cluster = pg_cluster
    for directory in targets.writable:
        _refused(cluster.rdsadmin, f"COPY (SELECT 1) TO '{directory / 'copy.txt'}'")
        # a program it runs is confined too
        _refused(cluster.rdsadmin, f"COPY (SELECT 1) TO PROGRAM 'cat > {directory / 'program.txt'}'")
    err = _refused(cluster.rdsadmin, f"SELECT pg_read_file('{targets.catalog}')")
    assert SECRET not in str(err)
    _refused(cluster.rdsadmin, f"SELECT pg_read_binary_file('{targets.catalog}')")
    cluster.rdsadmin("CREATE TABLE IF NOT EXISTS confine_loaded (line text)")
    try:
        _refused(cluster.rdsadmin, f"COPY confine_loaded FROM '{targets.catalog}'")
        assert cluster.rdsadmin("SELECT count(*) FROM confine_loaded") == [(0,)]
    finally:
        cluster.rdsadmin("DROP TABLE confine_loaded")
    _refused(cluster.rdsadmin, f"SELECT pg_ls_dir('{targets.catalog.parent}')")
    assert targets.files() == []
    # its own directories still work
    own = cluster.layout.data / f"copy-{secrets.token_hex(4)}.txt"
    try:
        cluster.rdsadmin(f"COPY (SELECT 'inside') TO '{own}'")
        assert own.read_text().strip() == "inside"
        assert cluster.rdsadmin(f"SELECT pg_read_file('{own}')") == [("inside\n",)]
        cluster.rdsadmin(f"COPY (SELECT 'program') TO PROGRAM 'cat > {own}'")
        assert own.read_text().strip() == "program"
    finally:
        own.unlink(missing_ok=True)


def test_postgres_parallel_query_uses_no_dev_shm(pg_cluster):
    """Dynamic shared memory (parallel query) lives in the data directory, inside the sandbox."""
    assert pg_cluster.rdsadmin("SHOW dynamic_shared_memory_type") == [("mmap",)]
    with contextlib.closing(pg_connect(pg_cluster)) as conn:
        for setting in ("max_parallel_workers_per_gather = 2", "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                        "min_parallel_table_scan_size = 0", "force_parallel_mode = on"):
            conn.execute(f"SET {setting}")
        conn.execute("CREATE TABLE confine_parallel AS SELECT g FROM generate_series(1, 100000) g")
        try:
            plan = "\n".join(r[0] for r in pg_rows(conn, "EXPLAIN (ANALYZE) SELECT count(*) FROM confine_parallel"))
            assert "Workers Launched: " in plan and "Workers Launched: 0" not in plan, plan
            assert pg_rows(conn, "SELECT count(*) FROM confine_parallel") == [(100000,)]
        finally:
            conn.execute("DROP TABLE confine_parallel")


def test_engine_still_sees_users_added_after_it_started(pg_cluster):
    """/etc/passwd is replaced whenever an OS user is added (dbkeep adds one per cluster): a
    confined engine that started earlier must still resolve its own user."""
    name = f"dbkconf{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True,
                   capture_output=True, timeout=30)
    subprocess.run(["userdel", name], check=True, capture_output=True, timeout=30)
    out = pg_cluster.layout.data / f"whoami-{secrets.token_hex(4)}"
    try:
        pg_cluster.rdsadmin(f"COPY (SELECT 1) TO PROGRAM 'id -un > {out}'")
        assert out.read_text().strip() == pg_cluster.user.name
    finally:
        out.unlink(missing_ok=True)
