"""End to end: EnableIAMDatabaseAuthentication on CreateDBCluster and ModifyDBCluster, reported
by DescribeDBClusters, and what the engine accepts once the call has returned (logins here go to
the engine's private socket with the proof the gateway sends, so the engine side is tested alone)."""

from __future__ import annotations

import os

import psycopg
import pymysql
import pytest

from clusters import create_cluster, mysql, postgres, socket_of, unique
from dbkeep.engines import iam
from dbkeep.engines.layout import ClusterLayout
from iam_login import mysql_proof_login, pg_proof_login

MYSQL_PASSWORD = "Iam-Start-Pass-1"
PG_PASSWORD = "Iam-Start-Pass-2"


def _described(dbkeep, ident: str) -> bool:
    return dbkeep.client("rds").describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0][
        "IAMDatabaseAuthenticationEnabled"]


def _modify(dbkeep, ident: str, on: bool) -> None:
    out = dbkeep.client("rds").modify_db_cluster(DBClusterIdentifier=ident, EnableIAMDatabaseAuthentication=on,
                                                 ApplyImmediately=True)["DBCluster"]
    assert out["IAMDatabaseAuthenticationEnabled"] is on
    assert _described(dbkeep, ident) is on


def test_mysql_iam_toggle(dbkeep):
    ident = unique("iam-my")
    cluster = create_cluster(dbkeep, "aurora-mysql", ident, MYSQL_PASSWORD, EnableIAMDatabaseAuthentication=True)
    assert cluster["IAMDatabaseAuthenticationEnabled"] is True
    sock = socket_of(dbkeep, cluster)
    iam_dir = iam.iam_dir(ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]))
    with mysql(dbkeep, cluster, "admin", MYSQL_PASSWORD) as m, m.cursor() as cur:
        cur.execute("CREATE USER jane_doe IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
        cur.execute("SHOW CREATE USER jane_doe")
        assert "AWSAuthenticationPlugin" in cur.fetchone()[0]
    mysql_proof_login(sock, iam_dir, "jane_doe").close()

    _modify(dbkeep, ident, False)

    def refused():
        with mysql(dbkeep, cluster, "admin", MYSQL_PASSWORD) as m, m.cursor() as cur:
            with pytest.raises(pymysql.MySQLError) as exc:
                cur.execute("CREATE USER iam_two IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
            assert exc.value.args[:2] == (1524, "Plugin 'AWSAuthenticationPlugin' is not loaded")
    refused()  # ModifyDBCluster returned once the engine took the switch: no waiting
    with pytest.raises(pymysql.MySQLError):
        mysql_proof_login(sock, iam_dir, "jane_doe")

    _modify(dbkeep, ident, True)
    mysql_proof_login(sock, iam_dir, "jane_doe").close()  # still mapped: works again, at once


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL IAM logins need dbkeep's PAM service (root)")
def test_postgres_iam_toggle(dbkeep):
    ident = unique("iam-pg")
    cluster = create_cluster(dbkeep, "aurora-postgresql", ident, PG_PASSWORD)
    assert cluster["IAMDatabaseAuthenticationEnabled"] is False
    run_dir = os.path.dirname(socket_of(dbkeep, cluster))
    iam_dir = iam.iam_dir(ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]))
    with postgres(dbkeep, cluster, "master", PG_PASSWORD) as m:
        m.execute("CREATE USER db_userx")
        m.execute("GRANT rds_iam TO db_userx")
    with pytest.raises(psycopg.OperationalError, match='PAM authentication failed for user "db_userx"'):
        pg_proof_login(run_dir, iam_dir, "db_userx")

    _modify(dbkeep, ident, True)
    pg_proof_login(run_dir, iam_dir, "db_userx").close()

    _modify(dbkeep, ident, False)

    def refused():
        with pytest.raises(psycopg.OperationalError, match='PAM authentication failed for user "db_userx"'):
            pg_proof_login(run_dir, iam_dir, "db_userx")
    refused()  # ModifyDBCluster returned once the engine took the switch: no waiting
