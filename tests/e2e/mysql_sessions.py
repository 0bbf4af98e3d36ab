"""MariaDB session helpers the guard's end-to-end tests share: statements through a connection
(every result set of a multi-statement read), the error a statement gets, and rdsadmin's own
connection on the cluster's private socket (past the gateway and its guard)."""

from __future__ import annotations

import pymysql
import pytest

from clusters import socket_of
from dbkeep.engines.layout import ClusterLayout


def rdsadmin(dbkeep, cluster):
    secret = ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]).read_secret()
    return pymysql.connect(unix_socket=socket_of(dbkeep, cluster), user="rdsadmin", password=secret, autocommit=True,
                           ssl_disabled=True, connect_timeout=10)


def run(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
        while cur.nextset():
            pass
        return rows


def error_of(conn, sql) -> tuple[int, str]:
    with pytest.raises(pymysql.err.MySQLError) as exc:
        run(conn, sql)
    return exc.value.args[0], exc.value.args[1] if len(exc.value.args) > 1 else ""
