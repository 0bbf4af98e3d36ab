"""Helpers for end-to-end tests that create clusters and log in to their engines."""

from __future__ import annotations

import time
import uuid

import psycopg
import pymysql

from dbkeep.engines.layout import ClusterLayout
from dbkeep.engines.mariadb import SOCKET_NAME
from dbkeep.engines.postgres import PORT as PG_PORT

WAITER = {"Delay": 1, "MaxAttempts": 240}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_cluster(dbkeep, engine: str, ident: str, password: str, *, database: str | None = "appdb", instance: bool = True,
                   instance_class: str = "db.r6g.large", **extra):
    rds = dbkeep.client("rds")
    args = dict(DBClusterIdentifier=ident, Engine=engine, MasterUsername="admin" if engine == "aurora-mysql" else "master",
                MasterUserPassword=password, **extra)
    if database:
        args["DatabaseName"] = database
    cluster = rds.create_db_cluster(**args)["DBCluster"]
    if instance:
        rds.create_db_instance(DBInstanceIdentifier=f"{ident}-1", DBClusterIdentifier=ident, Engine=engine, DBInstanceClass=instance_class)
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig=WAITER)
        rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=ident, WaiterConfig=WAITER)
    wait_cluster(dbkeep, ident)
    return rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0] if instance else cluster


def wait_cluster(dbkeep, ident: str, status: str = "available", timeout: float = 240) -> dict:
    rds = dbkeep.client("rds")
    deadline = time.monotonic() + timeout
    while True:
        cluster = rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]
        if cluster["Status"] == status:
            return cluster
        if cluster["Status"] == "failed" or time.monotonic() > deadline:
            raise AssertionError(f"cluster {ident} is {cluster['Status']}, not {status}: {cluster.get('StatusInfos')}\n{dbkeep.logs()[-4000:]}")
        time.sleep(0.3)


def socket_of(dbkeep, cluster: dict) -> str:
    run = ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]).run
    return str(run / (SOCKET_NAME if cluster["Engine"] == "aurora-mysql" else f".s.PGSQL.{PG_PORT}"))


def mysql(dbkeep, cluster: dict, user: str, password: str, database: str | None = None, *, via: str = "gateway", **kw):
    """The master's (or any account's) login: through the gateway with verified TLS by default,
    or on the engine's private socket (``via="socket"``, cleartext) where a test needs the engine itself."""
    if via == "socket":
        # PyMySQL would otherwise negotiate the engine's own TLS on the socket
        return pymysql.connect(unix_socket=socket_of(dbkeep, cluster), user=user, password=password, database=database,
                               connect_timeout=10, autocommit=True, **{"ssl_disabled": True, **kw})
    tls = {"ca": str(dbkeep.state_dir / "ca.pem"), "check_hostname": True}
    return pymysql.connect(host="localhost", port=cluster["Port"], user=user, password=password, database=database,
                           connect_timeout=10, autocommit=True, **{"ssl": tls, **kw})


def postgres(dbkeep, cluster: dict, user: str, password: str, database: str = "appdb", *, via: str = "gateway"):
    if via == "socket":
        import os

        return psycopg.connect(host=os.path.dirname(socket_of(dbkeep, cluster)), port=PG_PORT, user=user, password=password,
                               dbname=database, connect_timeout=10, autocommit=True)
    return psycopg.connect(host="localhost", port=cluster["Port"], user=user, password=password, dbname=database,
                           sslmode="verify-full", sslrootcert=str(dbkeep.state_dir / "ca.pem"), connect_timeout=10, autocommit=True)
