"""The engines' max_connections follow the instance classes, as on Aurora, and stay above the
gateway's limit plus the reserve kept for rdsadmin (rds/capacity.py), on a real ``dbkeep up``."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import botocore.exceptions
import pymysql
import pytest

from clusters import WAITER, create_cluster, mysql, postgres, unique, wait_cluster
from dbkeep_process import DbkeepProcess
from dbkeep.engines.layout import ClusterLayout
from dbkeep.rds.capacity import ENGINE_RESERVE

PASSWORD = "Capacity-Pass-1"


@pytest.fixture(scope="module")
def dbkeep():
    """``dbkeep up`` on its default limits (the shared one runs with --max-connections 200)."""
    base = Path(tempfile.mkdtemp(prefix="dbkeep-capacity-"))
    proc = DbkeepProcess(base / "state").start()
    yield proc
    assert proc.stop() == 0
    shutil.rmtree(base, ignore_errors=True)


def _until(fetch, expected, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _mysql_max(dbkeep, cluster) -> int:
    with mysql(dbkeep, cluster, "admin", PASSWORD) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.max_connections")
        return cur.fetchone()[0]


def _pg_setting(dbkeep, cluster, name: str) -> int:
    with postgres(dbkeep, cluster, "master", PASSWORD) as conn:
        return int(conn.execute(f"SHOW {name}").fetchone()[0])


def _member_status(dbkeep, ident: str) -> set[str]:
    cluster = dbkeep.client("rds").describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]
    return {m["DBClusterParameterGroupStatus"] for m in cluster["DBClusterMembers"]}


def test_mysql_follows_the_class_and_keeps_room_for_rdsadmin(dbkeep):
    rds = dbkeep.client("rds")
    ident = unique("cap-my")
    cluster = create_cluster(dbkeep, "aurora-mysql", ident, PASSWORD, instance_class="db.t3.medium")
    assert _mysql_max(dbkeep, cluster) == 90  # Aurora MySQL's value for db.t3.medium
    # the gateway admits 90 - 10 clients; the 81st gets the server's own 1040 from the gateway,
    # while rdsadmin (and the master, on the private socket) still find room in the engine
    gateway_limit = 90 - ENGINE_RESERVE
    held = []
    try:
        for _ in range(gateway_limit):
            held.append(pymysql.connect(host="127.0.0.1", port=cluster["Port"], user="admin", password=PASSWORD,
                                        connect_timeout=10, ssl_disabled=True))
        with pytest.raises(pymysql.OperationalError) as exc:
            pymysql.connect(host="127.0.0.1", port=cluster["Port"], user="admin", password=PASSWORD, connect_timeout=10,
                            ssl_disabled=True)
        assert exc.value.args[0] == 1040 and "Too many connections" in exc.value.args[1]
        secret = ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]).read_secret()
        socket_path = str(ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]).run / "mysqld.sock")
        for _ in range(3):  # dbkeep's own connections: a probe, a reset and hygiene at once
            with pymysql.connect(unix_socket=socket_path, user="rdsadmin", password=secret, ssl_disabled=True) as admin, \
                    admin.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.max_connections, COUNT(*) FROM information_schema.PROCESSLIST")
                max_connections, threads = cur.fetchone()
                assert max_connections == 90 and threads <= gateway_limit + 3
    finally:
        for conn in held:
            conn.close()
    # a larger class: at once (max_connections is dynamic on MySQL)
    rds.modify_db_instance(DBInstanceIdentifier=f"{ident}-1", DBInstanceClass="db.t3.large", ApplyImmediately=True)
    assert _until(lambda: _mysql_max(dbkeep, cluster), 135) == 135
    instance = rds.describe_db_instances(DBInstanceIdentifier=f"{ident}-1")["DBInstances"][0]
    assert instance["DBInstanceClass"] == "db.t3.large"
    # the cluster's engine serves all its instances: the largest class counts
    rds.create_db_instance(DBInstanceIdentifier=f"{ident}-2", DBClusterIdentifier=ident, Engine="aurora-mysql",
                           DBInstanceClass="db.r6g.large")
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-2", WaiterConfig=WAITER)
    assert _until(lambda: _mysql_max(dbkeep, cluster), 1000) == 1000
    rds.delete_db_instance(DBInstanceIdentifier=f"{ident}-2")
    assert _until(lambda: _mysql_max(dbkeep, cluster), 135) == 135
    assert _member_status(dbkeep, ident) == {"in-sync"}
    # classes dbkeep does not know are refused in RDS's words
    with pytest.raises(botocore.exceptions.ClientError) as error:
        rds.modify_db_instance(DBInstanceIdentifier=f"{ident}-1", DBInstanceClass="db.m1.tiny")
    assert error.value.response["Error"]["Code"] == "InvalidParameterCombination"
    assert "DBInstanceClass=db.m1.tiny" in error.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as error:
        rds.create_db_instance(DBInstanceIdentifier=f"{ident}-3", DBClusterIdentifier=ident, Engine="aurora-mysql",
                               DBInstanceClass="db.r6g.gigantic")
    assert error.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_postgres_follows_the_class_at_the_next_reboot(dbkeep):
    rds = dbkeep.client("rds")
    ident = unique("cap-pg")
    cluster = create_cluster(dbkeep, "aurora-postgresql", ident, PASSWORD, instance_class="db.t3.medium")
    assert _pg_setting(dbkeep, cluster, "max_connections") == 419  # LEAST(4 GiB/9531392, 5000)
    assert _pg_setting(dbkeep, cluster, "superuser_reserved_connections") == 3  # rdsadmin's, within the reserve
    assert _member_status(dbkeep, ident) == {"in-sync"}
    # static on PostgreSQL: pending-reboot until the instance reboots
    rds.modify_db_instance(DBInstanceIdentifier=f"{ident}-1", DBInstanceClass="db.t3.large", ApplyImmediately=True)
    assert _until(lambda: _member_status(dbkeep, ident), {"pending-reboot"}) == {"pending-reboot"}
    assert _pg_setting(dbkeep, cluster, "max_connections") == 419
    rds.reboot_db_instance(DBInstanceIdentifier=f"{ident}-1")
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig=WAITER)
    wait_cluster(dbkeep, ident)
    # db.t3.large's 839, bounded by --max-connections (1000 here) + the reserve
    assert _until(lambda: _pg_setting(dbkeep, cluster, "max_connections"), 839) == 839
    assert _member_status(dbkeep, ident) == {"in-sync"}
