"""KILL is restricted for the master; mysql.rds_kill / rds_kill_query are the way (SPEC.md)."""

from __future__ import annotations

import threading
import time

import pymysql
import pytest

from engine_clients import closing_all, my_connect, my_error, my_rows

pytestmark = pytest.mark.engines


@pytest.fixture
def victim(mysql_cluster):
    master = my_connect(mysql_cluster)
    my_rows(master, "CREATE USER IF NOT EXISTS 'victim'@'%' IDENTIFIED BY 'Victim-pass1'")
    my_rows(master, "GRANT SELECT ON appdb.* TO 'victim'@'%'")
    try:
        yield master
    finally:
        my_rows(master, "DROP USER IF EXISTS 'victim'@'%'")
        my_rows(master, "DROP USER IF EXISTS 'ops'@'%'")
        master.close()


def _thread_id(conn) -> int:
    return my_rows(conn, "SELECT CONNECTION_ID()")[0][0]


def _rdsadmin_connect(cluster) -> pymysql.Connection:
    return pymysql.connect(unix_socket=cluster.socket, user="rdsadmin", password=cluster.layout.read_secret(),
                           autocommit=True, connect_timeout=5)


def _is_dead(conn) -> bool:
    try:
        my_rows(conn, "SELECT 1")
    except pymysql.err.OperationalError as exc:
        return exc.args[0] in (2006, 2013, 1927, 4031)
    return False


def test_plain_kill_is_refused(mysql_cluster, victim):
    other = my_connect(mysql_cluster, user="victim", password="Victim-pass1")
    with closing_all(other):
        tid = _thread_id(other)
        for stmt in (f"KILL {tid}", f"KILL QUERY {tid}"):
            assert my_error(my_rows, victim, stmt) == (1095, f"You are not owner of thread {tid}")
        assert not _is_dead(other)


def test_rds_kill_ends_the_connection(mysql_cluster, victim):
    other = my_connect(mysql_cluster, user="victim", password="Victim-pass1")
    with closing_all(other):
        tid = _thread_id(other)
        my_rows(victim, "CALL mysql.rds_kill(%s)", (tid,))
        assert _is_dead(other)


def test_rds_kill_query_keeps_the_connection(mysql_cluster, victim):
    other = my_connect(mysql_cluster, user="victim", password="Victim-pass1")
    with closing_all(other):
        tid = _thread_id(other)
        result: dict = {}

        def sleeper():
            t0 = time.monotonic()
            try:
                result["rows"] = my_rows(other, "SELECT SLEEP(20)")
            except pymysql.MySQLError as exc:
                result["error"] = exc.args[0]
            result["took"] = time.monotonic() - t0

        t = threading.Thread(target=sleeper)
        t.start()
        for _ in range(100):
            if my_rows(victim, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                               "WHERE ID = %s AND INFO LIKE 'SELECT SLEEP%%'", (tid,))[0][0]:
                break
            time.sleep(0.05)
        my_rows(victim, "CALL mysql.rds_kill_query(%s)", (tid,))
        t.join(10)
        assert result["took"] < 10
        assert result.get("rows") == [(1,)] or result.get("error") == 1317
        assert my_rows(other, "SELECT 1") == [(1,)]       # the connection survives


def test_rds_kill_refuses_rdsadmin_and_unknown_threads(mysql_cluster, victim):
    admin = _rdsadmin_connect(mysql_cluster)
    with closing_all(admin):
        tid = _thread_id(admin)
        for proc in ("rds_kill", "rds_kill_query"):
            assert my_error(my_rows, victim, f"CALL mysql.{proc}(%s)", (tid,)) == \
                (1095, f"You are not owner of thread {tid}")
        assert my_error(my_rows, victim, f"KILL {tid}") == (1095, f"You are not owner of thread {tid}")
        assert not _is_dead(admin)
    for proc in ("rds_kill", "rds_kill_query"):
        assert my_error(my_rows, victim, f"CALL mysql.{proc}(987654321)") == (1094, "Unknown thread id: 987654321")


def test_rds_kill_usable_by_anyone_granted_execute(mysql_cluster, victim):
    my_rows(victim, "CREATE USER IF NOT EXISTS 'ops'@'%' IDENTIFIED BY 'Ops-pass-123'")
    my_rows(victim, "GRANT EXECUTE ON PROCEDURE mysql.rds_kill TO 'ops'@'%'")
    ops = my_connect(mysql_cluster, user="ops", password="Ops-pass-123")
    other = my_connect(mysql_cluster, user="victim", password="Victim-pass1")
    with closing_all(ops, other):
        tid = _thread_id(other)
        assert my_error(my_rows, ops, f"KILL {tid}")[0] == 1095
        my_rows(ops, "CALL mysql.rds_kill(%s)", (tid,))
        assert _is_dead(other)
        assert my_error(my_rows, ops, "CALL mysql.rds_kill_query(1)")[0] == 1370   # no EXECUTE on that one
