"""No account but rdsadmin may ever hold a privilege outside the master's list (issue 15, item 1).

Through ``dbkeep up``'s gateway, as the master: writes to the grant tables that would give a
privilege only rdsadmin may hold (SUPER, FILE …) are refused with ``ERROR 1227`` before they
reach the engine, whatever their spelling; what the guard cannot read (CALL, EXECUTE of a
prepared statement built at run time) is followed by the hygiene — privileges taken back,
sessions of the accounts that held them ended, audited — before the session's next statement.
Ordinary master work is untouched, and an application account's sessions are not inspected.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pymysql
import pytest
from pymysql.constants import CLIENT

from clusters import create_cluster, mysql, unique, wait_cluster
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from mysql_sessions import error_of, rdsadmin, run
from process_stats import relay_and_loop_ticks


PASSWORD = "Hygiene-Pass-1"
ADMIN_ONLY = ("SUPER", "FILE", "SHUTDOWN", "CONNECTION ADMIN", "SET USER", "FEDERATED ADMIN", "READ_ONLY ADMIN",
              "BINLOG ADMIN", "REPLICATION MASTER ADMIN", "REPLICATION SLAVE ADMIN", "BINLOG REPLAY", "SLAVE MONITOR",
              "CREATE TABLESPACE", "DELETE HISTORY")
ADD_FILE_SUPER = ("JSON_SET(Priv, '$.access', CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) | 2 | 512 | 32768)")
REPRO = f"UPDATE mysql.global_priv SET Priv={ADD_FILE_SUPER} WHERE User='admin'"


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "mysql")


@pytest.fixture(scope="module")
def hy(dbkeep):
    cluster = create_cluster(dbkeep, "aurora-mysql", unique("hyg"), PASSWORD)
    return cluster


def master(dbkeep, cluster, **kw):
    return mysql(dbkeep, cluster, "admin", PASSWORD, "appdb", client_flag=CLIENT.MULTI_STATEMENTS, **kw)


def assert_clean(dbkeep, cluster) -> None:
    """Nobody but rdsadmin holds, in the tables or in the server's memory, a privilege outside
    the master's list; the master's own SHOW GRANTS never lists one; rdsadmin logs in."""
    with rdsadmin(dbkeep, cluster) as admin:
        beyond = run(admin, "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                            "WHERE GRANTEE <> \"'rdsadmin'@'localhost'\" AND PRIVILEGE_TYPE IN ({})".format(
                                ", ".join(f"'{p}'" for p in ADMIN_ONLY)))
        assert beyond == (), beyond
        run(admin, "CREATE ROLE IF NOT EXISTS probe_master")
        run(admin, "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER, "
                   "SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, BINLOG MONITOR, "
                   "CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER ON *.* TO "
                   "probe_master WITH GRANT OPTION")
        [(mask,)] = run(admin, "SELECT CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) FROM mysql.global_priv "
                               "WHERE User = 'probe_master'")
        run(admin, "DROP ROLE probe_master")
        rows = run(admin, "SELECT User, Host FROM mysql.global_priv WHERE User <> 'rdsadmin' AND "
                          f"CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) & ~{int(mask)} <> 0")
        assert rows == (), rows
    with master(dbkeep, cluster) as conn:
        for who in ("'admin'@'%'", "rds_superuser_role"):
            grants = " ".join(r[0] for r in run(conn, f"SHOW GRANTS FOR {who}"))
            assert " FILE" not in grants and "SUPER," not in grants and "SUPER ON" not in grants, grants
        assert error_of(conn, "SET GLOBAL general_log_file = '/tmp/never'")[0] == 1227


def refusals(dbkeep, cluster, since) -> list[dict]:
    return audit_events(dbkeep, "gateway.statement_refused", cluster["DBClusterIdentifier"], since=since)


def taken_back(dbkeep, cluster, since, *, wait: bool = False) -> list[dict]:
    """The hygiene's audit events since ``since``; ``wait``: until there is one (the hygiene
    ends the client's session through the engine before the gateway writes its event)."""
    deadline = time.monotonic() + (10 if wait else 0)
    while True:
        events = audit_events(dbkeep, "gateway.privileges_taken_back", cluster["DBClusterIdentifier"], since=since)
        if events or time.monotonic() >= deadline:
            return events
        time.sleep(0.05)


# --- the reproduction --------------------------------------------------------------------------


def test_the_reproduction_is_refused_and_writes_no_file(dbkeep, hy):
    target = Path("/tmp") / f"dbkeep-hygiene-{uuid.uuid4().hex[:8]}.log"
    mark = audit_mark(dbkeep)
    with master(dbkeep, hy) as conn:
        errno, message = error_of(conn, REPRO)
        assert (errno, message) == (1227, "Access denied; you need (at least one of) the FILE, SUPER privilege(s) "
                                          "for this operation")
        run(conn, "FLUSH PRIVILEGES")
        grants = " ".join(r[0] for r in run(conn, "SHOW GRANTS"))
        assert "FILE" not in grants and "SUPER" not in grants
        assert error_of(conn, f"SET GLOBAL general_log_file='{target}'")[0] == 1227
        assert error_of(conn, "SET GLOBAL general_log=1")[0] == 1227
        run(conn, "SELECT 'line'")
    with master(dbkeep, hy) as again:  # a new login has nothing more either
        assert error_of(again, f"SET GLOBAL general_log_file='{target}'")[0] == 1227
    assert not target.exists()
    [event] = refusals(dbkeep, hy, mark)
    assert event["user"] == "admin" and event["mysql_errno"] == 1227 and event["rule"] == "write to mysql.global_priv"
    assert "'admin'" not in event["statement"] and "UPDATE mysql.global_priv" in event["statement"]
    assert_clean(dbkeep, hy)


# --- variants that the guard reads: refused, nothing reaches the engine --------------------------

_ROLE = "UPDATE mysql.global_priv SET Priv=" + ADD_FILE_SUPER + " WHERE User='rds_superuser_role'"
REFUSED = {
    "role": [_ROLE],
    "insert_literal": ["INSERT INTO mysql.global_priv VALUES ('%', 'evil', '{\"access\":549755813887}')"],
    "replace": ["REPLACE INTO mysql.global_priv SELECT Host, 'evil2', Priv FROM mysql.global_priv WHERE User = 'admin'"],
    "insert_select": ["INSERT INTO mysql.global_priv (Host, User, Priv) SELECT '%', 'evil3', Priv FROM mysql.global_priv LIMIT 1"],
    "multi_statement": [REPRO + "; FLUSH PRIVILEGES; SET ROLE NONE; SET GLOBAL general_log=1"],
    "executable_comment": ["/*!UPDATE*/ mysql.global_priv SET Priv=" + ADD_FILE_SUPER + " WHERE User='admin'"],
    "versioned_comment": ["/*!50000 UPDATE mysql.global_priv */ SET Priv=" + ADD_FILE_SUPER + " WHERE User='admin'"],
    "mariadb_comment": ["/*M!100000 UPDATE */ mysql.global_priv SET Priv=" + ADD_FILE_SUPER],
    "use_mysql": ["USE mysql; UPDATE global_priv SET Priv=" + ADD_FILE_SUPER + " WHERE User='admin'"],
    "use_then": ["USE mysql", "UPDATE global_priv SET Priv=" + ADD_FILE_SUPER + " WHERE User='admin'"],
    "backticks": ["UPDATE `mysql`.`global_priv` SET Priv=" + ADD_FILE_SUPER + " WHERE User='admin'"],
    "upper_case": ["update MYSQL.GLOBAL_PRIV set Priv=" + ADD_FILE_SUPER + " where User='admin'"],
    "ansi_quotes": ["SET SESSION sql_mode = 'ANSI_QUOTES'",
                    'UPDATE "mysql"."global_priv" SET Priv=' + ADD_FILE_SUPER.replace("'$.access'", "'$.access'") + " WHERE User='admin'"],
    "comment_tricks": ["UPDATE mysql . /* x */ global_priv -- y\n SET Priv=" + ADD_FILE_SUPER + " WHERE User='admin'"],
    "join": ["UPDATE mysql.global_priv g JOIN mysql.db d ON 1 = 0 SET g.Priv=" + ADD_FILE_SUPER],
    "prepare_literal": ["PREPARE s FROM 'UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, \\'$.access\\', 549755813887)'"],
    "execute_immediate_literal": ["EXECUTE IMMEDIATE 'UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, \"$.access\", 32768)'"],
    "procedure_body": ["CREATE PROCEDURE appdb.grab() BEGIN " + REPRO + "; FLUSH PRIVILEGES; END"],
    "procedure_dynamic_sql": ["CREATE PROCEDURE appdb.dyn() BEGIN EXECUTE IMMEDIATE @s; END"],
    "anonymous_block": ["BEGIN NOT ATOMIC " + REPRO + "; FLUSH PRIVILEGES; SET ROLE NONE; END"],
    "event_body": ["CREATE EVENT appdb.ev ON SCHEDULE EVERY 1 SECOND DO " + REPRO],
    "trigger_body": ["CREATE TABLE IF NOT EXISTS appdb.tt (i INT)",
                     "CREATE TRIGGER appdb.tr AFTER INSERT ON appdb.tt FOR EACH ROW " + REPRO],
    "forge_definer": ["INSERT INTO mysql.proc SELECT * FROM mysql.proc WHERE name = 'rds_kill'"],
    "rename_grant_table": ["RENAME TABLE mysql.global_priv TO mysql.gp_x"],
    "drop_grant_table": ["DROP TABLE mysql.roles_mapping"],
    "truncate": ["TRUNCATE TABLE mysql.global_priv"],
    "alter_grant_table": ["ALTER TABLE mysql.db ENGINE = InnoDB"],
    "load_data": ["LOAD DATA INFILE '/etc/hostname' INTO TABLE mysql.global_priv"],
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_grant_table_writes_the_guard_reads_are_refused(dbkeep, hy, case):
    mark = audit_mark(dbkeep)
    statements = REFUSED[case]
    with master(dbkeep, hy) as conn:
        for sql in statements[:-1]:
            run(conn, sql)
        errno, message = error_of(conn, statements[-1])
        assert errno == 1227 and message.startswith("Access denied; you need (at least one of) the "), (errno, message)
        if case == "role":
            run(conn, "SET ROLE rds_superuser_role")
            assert error_of(conn, "SET GLOBAL general_log=1")[0] == 1227
        assert run(conn, "SELECT 1") == ((1,),)  # the session goes on
    events = refusals(dbkeep, hy, mark)
    assert len(events) == 1 and events[0]["rule"], events
    assert PASSWORD not in json.dumps(events)
    with rdsadmin(dbkeep, hy) as admin:
        assert run(admin, "SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE 'evil%'") == ((0,),)
        assert run(admin, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql' "
                          "AND TABLE_NAME IN ('global_priv', 'roles_mapping', 'db')") == ((3,),)
        assert run(admin, "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'appdb'") == ((0,),)
    assert_clean(dbkeep, hy)


# --- variants the guard cannot read: taken back before the next statement ------------------------

# (a bare variable is read before it runs and refused like a literal:
# test_guard_mysql_prepare_variable.py; an expression is not read)
_DYNAMIC = ("CONCAT('UPDATE mysql.glo', 'bal_priv SET Priv = JSON_SET(Priv, ''$.access'', "
            "CAST(JSON_VALUE(Priv, ''$.access'') AS UNSIGNED) | 512 | 32768) WHERE User = ''admin''')")
TAKEN_BACK = {
    "prepare_from_expression": ["PREPARE s FROM " + _DYNAMIC, "EXECUTE s"],
    "execute_immediate_expression": ["EXECUTE IMMEDIATE " + _DYNAMIC],
}


def _taken_back_check(dbkeep, cluster, statements, mark):
    conn = master(dbkeep, cluster)
    try:
        for sql in statements:
            run(conn, sql)
        # the hygiene ran before anything else: this session held SUPER in the tables, so it
        # was ended; if the engine's answer came first, the next statement finds it gone
        with pytest.raises(pymysql.err.MySQLError):
            run(conn, "SET GLOBAL general_log=1")
    finally:
        conn.close()
    events = taken_back(dbkeep, cluster, mark, wait=True)
    assert events and "admin@%" in " ".join(events[-1]["repairs"]), events
    assert any("admin" in s for s in events[-1]["ended_sessions"]), events
    repaired = audit_events(dbkeep, "engine.repaired", cluster["DBClusterIdentifier"], since=mark)
    assert any("admin@%" in e["reason"] for e in repaired), repaired
    assert_clean(dbkeep, cluster)


@pytest.mark.parametrize("case", list(TAKEN_BACK))
def test_dynamic_sql_is_taken_back_before_the_next_statement(dbkeep, hy, case):
    _taken_back_check(dbkeep, hy, TAKEN_BACK[case], audit_mark(dbkeep))


def test_a_procedure_that_writes_and_flushes_is_refused_at_call(dbkeep, hy):
    """A procedure the guard never saw at CREATE (made before it; here written by rdsadmin with
    the master as definer) does the UPDATE and the FLUSH: before the CALL runs, the gateway
    reads the cluster's routines and refuses it."""
    with rdsadmin(dbkeep, hy) as admin:
        run(admin, "CREATE OR REPLACE DEFINER = 'admin'@'%' PROCEDURE appdb.old_grab() SQL SECURITY DEFINER BEGIN "
                   + REPRO + "; FLUSH PRIVILEGES; END")
    mark = audit_mark(dbkeep)
    try:
        with master(dbkeep, hy) as conn:
            errno, _ = error_of(conn, "CALL appdb.old_grab()")
            assert errno == 1227
            assert run(conn, "SELECT 1") == ((1,),)
        [event] = refusals(dbkeep, hy, mark)
        assert event["rule"].startswith("procedure appdb.old_grab: ")
    finally:
        with rdsadmin(dbkeep, hy) as admin:
            run(admin, "DROP PROCEDURE IF EXISTS appdb.old_grab")
    assert_clean(dbkeep, hy)


SNEAKY = ("CREATE PROCEDURE appdb.sneaky() SQL SECURITY INVOKER BEGIN "
          "EXECUTE IMMEDIATE CONCAT('UPDATE mysql.glo', 'bal_priv SET Priv = JSON_SET(Priv, ''$.access'', "
          "CAST(JSON_VALUE(Priv, ''$.access'') AS UNSIGNED) | 512 | 32768) WHERE User = ''admin'''); "
          "FLUSH PRIVILEGES; SET ROLE NONE; SET GLOBAL general_log_file = '{target}'; SET GLOBAL general_log = 1; "
          "SELECT 'line'; SET GLOBAL general_log = 0; END")


def binary_call_error(dbkeep, cluster) -> tuple[int, str]:
    """COM_STMT_PREPARE of the CALL, then COM_STMT_EXECUTE (mysql-connector's binary protocol)."""
    import mysql.connector

    conn = mysql.connector.connect(host="localhost", port=cluster["Port"], user="admin", password=PASSWORD,
                                   database="appdb", ssl_ca=str(dbkeep.state_dir / "ca.pem"), use_pure=True,
                                   connection_timeout=10)
    try:
        cur = conn.cursor(prepared=True)
        with pytest.raises(mysql.connector.Error) as exc:
            cur.execute("CALL appdb.sneaky()")
        cur.close()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
        return exc.value.errno, exc.value.msg
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["call", "execute_immediate", "prepare_execute", "binary_protocol"])
def test_a_routine_the_guard_never_read_cannot_grant_and_use_a_privilege_in_one_call(dbkeep, hy, how):
    """An application account (not inspected: privileges on its own database only) writes
    an SQL SECURITY INVOKER procedure that, run by the master, would write SUPER into the grant
    tables, flush, SET ROLE and use it, all inside one CALL (MariaDB allows that). Before any
    statement that may run a routine it has not read, the gateway judges the cluster's routines:
    the master's CALL is refused, however it is spelled, and no file appears."""
    target = Path("/tmp") / f"dbkeep-sneaky-{uuid.uuid4().hex[:8]}.log"
    with master(dbkeep, hy) as conn:
        run(conn, "CREATE USER IF NOT EXISTS 'devel'@'%' IDENTIFIED BY 'Devel-Pass-1'")
        run(conn, "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, CREATE ROUTINE, ALTER ROUTINE, EXECUTE "
                  "ON appdb.* TO 'devel'@'%'")
    try:
        with mysql(dbkeep, hy, "devel", "Devel-Pass-1", "appdb") as dev:
            time.sleep(0.5)  # its facts arrive: from here on its session is not inspected
            run(dev, "DROP PROCEDURE IF EXISTS appdb.sneaky")
            run(dev, SNEAKY.format(target=target))
        mark = audit_mark(dbkeep)
        if how == "binary_protocol":
            errno, message = binary_call_error(dbkeep, hy)
        else:
            with master(dbkeep, hy) as conn:
                if how == "call":
                    errno, message = error_of(conn, "CALL appdb.sneaky()")
                elif how == "execute_immediate":
                    run(conn, "SET @c = CONCAT('CALL appdb.', 'sneaky()')")
                    errno, message = error_of(conn, "EXECUTE IMMEDIATE @c")
                else:
                    run(conn, "PREPARE c FROM 'CALL appdb.sneaky()'")
                    errno, message = error_of(conn, "EXECUTE c")
                assert run(conn, "SELECT 1") == ((1,),)
        assert errno == 1227, (errno, message)
        assert not target.exists()
        events = refusals(dbkeep, hy, mark)
        assert events and "appdb.sneaky" in events[-1]["rule"], events
    finally:
        with master(dbkeep, hy) as conn:
            run(conn, "DROP PROCEDURE IF EXISTS appdb.sneaky")
            run(conn, "DROP USER IF EXISTS 'devel'@'%'")
    assert_clean(dbkeep, hy)


def test_rdsadmin_deleted_by_dml_is_refused_or_put_back_live(dbkeep, hy):
    """The DML the guard reads is refused (issue 12); built at run time, it runs, and the
    hygiene after it puts rdsadmin's row back and ends the session (the last line)."""
    mark = audit_mark(dbkeep)
    with master(dbkeep, hy) as conn:
        assert error_of(conn, "DELETE FROM mysql.global_priv WHERE User = 'rdsadmin'")[0] == 1227
        run(conn, "SET @s = CONCAT('DELETE FROM mysql.global_priv WHERE User = ''rds', 'admin''')")
        assert error_of(conn, "EXECUTE IMMEDIATE @s")[0] == 1227  # a variable is read first: refused
        run(conn, "EXECUTE IMMEDIATE CONCAT('DELETE FROM mysql.global_priv WHERE User = ''rds', 'admin''')")
        with pytest.raises(pymysql.err.MySQLError):  # the session was ended (once the check ran)
            for _ in range(100):
                run(conn, "SELECT 1")
                time.sleep(0.1)
    with rdsadmin(dbkeep, hy) as admin:  # dbkeep's own hand still logs in
        assert run(admin, "SELECT CURRENT_USER()") == (("rdsadmin@localhost",),)
        assert run(admin, "SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'rdsadmin'") == ((1,),)
    repaired = audit_events(dbkeep, "engine.repaired", hy["DBClusterIdentifier"], since=mark)
    assert any(e["reason"].startswith("rdsadmin restored") for e in repaired), repaired
    assert audit_events(dbkeep, "gateway.protected_account_restored", hy["DBClusterIdentifier"], since=mark)
    assert_clean(dbkeep, hy)


def test_statements_after_a_hygiene_trigger_in_one_packet_are_refused(dbkeep, hy):
    with master(dbkeep, hy) as conn:
        errno, message = error_of(conn, "CALL mysql.rds_kill(0); SELECT 2")
        assert errno == 1235 and "statements after CALL" in message
        errno, _ = error_of(conn, "FLUSH PRIVILEGES; SET ROLE NONE")
        assert errno == 1235
        assert run(conn, "SELECT 3") == ((3,),)


# --- ordinary work ---------------------------------------------------------------------------------


def test_ordinary_master_work_still_works(dbkeep, hy):
    mark = audit_mark(dbkeep)
    with master(dbkeep, hy) as conn:
        run(conn, "CREATE DATABASE IF NOT EXISTS shop")
        run(conn, "CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(40))")
        run(conn, "INSERT INTO shop.items VALUES (1, 'one'), (2, 'two')")
        run(conn, "UPDATE shop.items SET name = 'uno' WHERE id = 1")
        run(conn, "DELETE FROM shop.items WHERE id = 2")
        assert run(conn, "SELECT * FROM shop.items") == ((1, "uno"),)
        run(conn, "CREATE USER 'shopper'@'%' IDENTIFIED BY 'Shopper-Pass-1'")
        run(conn, "GRANT SELECT, INSERT ON shop.* TO 'shopper'@'%'; FLUSH PRIVILEGES")
        run(conn, "CREATE ROLE shop_reader")
        run(conn, "GRANT SELECT ON shop.* TO shop_reader")
        run(conn, "GRANT shop_reader TO 'shopper'@'%'")
        run(conn, "REVOKE INSERT ON shop.* FROM 'shopper'@'%'")
        grants = " ".join(r[0] for r in run(conn, "SHOW GRANTS FOR 'shopper'@'%'"))
        assert "GRANT SELECT ON `shop`.*" in grants and "shop_reader" in grants
        run(conn, "CREATE PROCEDURE shop.count_items() SELECT COUNT(*) FROM shop.items")
        assert run(conn, "CALL shop.count_items()") == ((1,),)
        assert run(conn, "SELECT User FROM mysql.global_priv WHERE User = 'shopper'") == (("shopper",),)
        run(conn, "DROP USER 'shopper'@'%'")
        run(conn, "DROP ROLE shop_reader")
        run(conn, "DROP DATABASE shop")
        grants = " ".join(r[0] for r in run(conn, "SHOW GRANTS"))
        assert "rds_superuser_role" in grants
    assert refusals(dbkeep, hy, mark) == [] and taken_back(dbkeep, hy, mark) == []
    assert_clean(dbkeep, hy)


def test_an_application_accounts_session_is_not_inspected(dbkeep, hy):
    """An account with read-only global privileges goes to the native relay (the relay threads
    carry a big result, the event loop next to nothing). So does the master's, whose statements
    are still inspected there (issue 12, item 10): the relay threads carry its result too, and
    a grant-table write in the same session is refused."""
    with master(dbkeep, hy) as conn:
        run(conn, "CREATE USER IF NOT EXISTS 'reader'@'%' IDENTIFIED BY 'Reader-Pass-1'")
        run(conn, "GRANT SELECT ON *.* TO 'reader'@'%'")
    big = "SELECT REPEAT('x', 1000) FROM seq_1_to_50000"

    def stream(user, password, then=None):
        conn = mysql(dbkeep, hy, user, password, "appdb")
        try:
            time.sleep(0.5)  # the account's facts arrive; the session is handed over
            run(conn, "SELECT 1")

            def work():
                for _ in range(2):
                    assert len(run(conn, big)) == 50000
            ticks = relay_and_loop_ticks(dbkeep.proc.pid, work)
            if then is not None:
                then(conn)
            return ticks
        finally:
            conn.close()

    def refused(conn):
        with pytest.raises(pymysql.err.OperationalError) as err:
            run(conn, REPRO)
        assert err.value.args[0] == 1227

    relay, loop = stream("reader", "Reader-Pass-1")
    assert relay >= 3 and relay > 2 * loop, (relay, loop)
    relay, loop = stream("admin", PASSWORD, then=refused)
    assert relay >= 3 and relay > 2 * loop, (relay, loop)
    with master(dbkeep, hy) as conn:
        run(conn, "DROP USER 'reader'@'%'")
    assert_clean(dbkeep, hy)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "cleartext"])
def test_the_masters_session_on_the_relay_threads_is_judged_statement_by_statement(dbkeep, hy, tls):
    """The master's (inspected) session on the native relay (issue 12, item 10): pipelined
    multi-statements with a refused one in the middle, a statement longer than the relay's
    buffer (judged in Python), prepared statements executed without a trip to Python, USE,
    and a hygiene trigger followed by a statement that waits for the hygiene; after each the
    session is back on the relay threads, and nothing leaked past the guard."""
    mark = audit_mark(dbkeep)
    options = {} if tls else {"ssl": None, "ssl_disabled": True}
    with master(dbkeep, hy, **options) as conn:
        time.sleep(0.5)  # the account's facts: privileged, so inspected
        run(conn, "CREATE TABLE IF NOT EXISTS appdb.native_t (id INT PRIMARY KEY, v MEDIUMTEXT)")
        run(conn, "DELETE FROM appdb.native_t")
        with pytest.raises(pymysql.err.OperationalError) as err:
            run(conn, f"INSERT INTO appdb.native_t VALUES (1, 'a'); {REPRO}; INSERT INTO appdb.native_t VALUES (2, 'b')")
        assert err.value.args[0] == 1227
        # nothing after the refused statement ran; the session goes on
        assert run(conn, "SELECT COUNT(*) FROM appdb.native_t WHERE id = 2") == ((0,),)
        long_text = "x" * 200_000
        run(conn, f"INSERT INTO appdb.native_t VALUES (3, '{long_text}')")
        assert run(conn, "SELECT LENGTH(v) FROM appdb.native_t WHERE id = 3") == ((200_000,),)
        with pytest.raises(pymysql.err.OperationalError) as err:
            run(conn, f"/* {long_text} */ {REPRO}")
        assert err.value.args[0] == 1227
        conn.select_db("mysql")
        assert run(conn, "SELECT DATABASE()") == (("mysql",),)
        conn.select_db("appdb")
        run(conn, "FLUSH PRIVILEGES")  # a trigger: the next statement waits for the hygiene
        assert run(conn, "SELECT 1") == ((1,),)
        relay, loop = relay_and_loop_ticks(dbkeep.proc.pid, lambda: [run(conn, "SELECT REPEAT('x', 1000) FROM seq_1_to_50000")
                                                                    for _ in range(2)])
        assert relay >= 3 and relay > 2 * loop, (relay, loop)
        run(conn, "DROP TABLE appdb.native_t")
    import mysql.connector  # prepared statements: COM_STMT_PREPARE judged, executions not

    kwargs = {"ssl_ca": str(dbkeep.state_dir / "ca.pem")} if tls else {"ssl_disabled": True}
    conn = mysql.connector.connect(host="localhost", port=hy["Port"], user="admin", password=PASSWORD, database="appdb",
                                   connection_timeout=10, use_pure=True, **kwargs)
    try:
        cur = conn.cursor(prepared=True)
        for n in range(300):
            cur.execute("SELECT ? + 1", (n,))
            assert cur.fetchall() == [(n + 1,)]
        with pytest.raises(mysql.connector.Error) as exc:
            cur.execute(REPRO.replace("User='admin'", "User=?"), ("admin",))
        assert exc.value.errno == 1227
        cur.close()
    finally:
        conn.close()
    assert {e["rule"] for e in refusals(dbkeep, hy, mark)} and len(refusals(dbkeep, hy, mark)) == 3
    assert_clean(dbkeep, hy)


def test_facts_read_before_a_master_reset_are_not_used_after_it(dbkeep, hy):
    """A master stripped of its privileges is an unprivileged account, and its sessions are
    released; the master reset gives the privileges back through rdsadmin, so the master's next
    session must be inspected again at once, not on facts cached before the reset."""
    rds = dbkeep.client("rds")

    def reset(password: str) -> None:
        rds.modify_db_cluster(DBClusterIdentifier=hy["DBClusterIdentifier"], MasterUserPassword=password,
                              ApplyImmediately=True)
        wait_cluster(dbkeep, hy["DBClusterIdentifier"])

    with master(dbkeep, hy) as conn:
        run(conn, "REVOKE `rds_superuser_role` FROM 'admin'@'%'")
        run(conn, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'admin'@'%'")
    time.sleep(1)  # the hygiene after the REVOKEs is done
    with mysql(dbkeep, hy, "admin", PASSWORD) as conn:  # its facts are read now: unprivileged
        time.sleep(0.5)
        run(conn, "SELECT 1")
    try:
        reset("Hygiene-Reset-2")
        conn = mysql(dbkeep, hy, "admin", "Hygiene-Reset-2", "appdb")
        try:
            time.sleep(0.5)  # the account's facts arrive (stale ones would hand the session to the native relay)
            errno, message = error_of(conn, REPRO)
        finally:
            conn.close()
        assert errno == 1227 and "SUPER" in message, (errno, message)
    finally:
        reset(PASSWORD)
    assert_clean(dbkeep, hy)


def test_a_live_session_whose_account_is_given_the_mysql_schema_is_ended(dbkeep, hy):
    """MariaDB applies a database-level grant to live sessions at once: a session that went to
    the native relay as read-only cannot keep running once its account may write ``mysql``."""
    with master(dbkeep, hy) as conn:
        run(conn, "CREATE USER IF NOT EXISTS 'later'@'%' IDENTIFIED BY 'Later-Pass-1'")
        run(conn, "GRANT SELECT ON appdb.* TO 'later'@'%'")
    try:
        later = mysql(dbkeep, hy, "later", "Later-Pass-1", "appdb")
        time.sleep(0.5)  # not inspected: handed to the native relay
        assert run(later, "SELECT 1") == ((1,),)
        mark = audit_mark(dbkeep)
        with master(dbkeep, hy) as conn:
            run(conn, "GRANT INSERT ON mysql.* TO 'later'@'%'")
            time.sleep(0.5)
            assert run(conn, "SELECT 2") == ((2,),)  # the master's own session goes on
        with pytest.raises(pymysql.err.MySQLError):  # ended once the re-check after the GRANT ran
            for _ in range(100):
                run(later, "SELECT 1")
                time.sleep(0.1)
        later.close()
        [event] = audit_events(dbkeep, "gateway.session_ended", hy["DBClusterIdentifier"], since=mark)
        assert event["user"] == "later" and "reconnect" in event["reason"]
        with mysql(dbkeep, hy, "later", "Later-Pass-1", "appdb") as again:  # a new session is inspected
            assert error_of(again, "UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'later'")[0] == 1227
    finally:
        with master(dbkeep, hy) as conn:
            run(conn, "DROP USER IF EXISTS 'later'@'%'")


def test_an_applications_own_definer_routines_with_dynamic_sql_stay_callable(dbkeep, hy):
    """A routine that runs as an application account (SQL SECURITY DEFINER, the definer's
    sessions not inspected) cannot reach the grant tables whatever SQL it builds: the master
    may call it, and what it runs is taken back if needed after the CALL."""
    with master(dbkeep, hy) as conn:
        run(conn, "CREATE USER IF NOT EXISTS 'devel2'@'%' IDENTIFIED BY 'Devel-Pass-2'")
        run(conn, "GRANT SELECT, INSERT, CREATE, DROP, CREATE ROUTINE, ALTER ROUTINE, EXECUTE ON appdb.* TO 'devel2'@'%'")
    try:
        with mysql(dbkeep, hy, "devel2", "Devel-Pass-2", "appdb") as dev:
            time.sleep(0.5)
            run(dev, "CREATE OR REPLACE PROCEDURE appdb.partition_job(IN t VARCHAR(64)) SQL SECURITY DEFINER BEGIN "
                     "EXECUTE IMMEDIATE CONCAT('CREATE TABLE IF NOT EXISTS appdb.', t, ' (i INT)'); END")
        mark = audit_mark(dbkeep)
        with master(dbkeep, hy) as conn:
            run(conn, "CALL appdb.partition_job('made_by_job')")
            assert run(conn, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'made_by_job'") == ((1,),)
        assert refusals(dbkeep, hy, mark) == []
    finally:
        with master(dbkeep, hy) as conn:
            run(conn, "DROP PROCEDURE IF EXISTS appdb.partition_job")
            run(conn, "DROP TABLE IF EXISTS appdb.made_by_job")
            run(conn, "DROP USER IF EXISTS 'devel2'@'%'")


def test_a_character_set_change_cannot_hide_a_statement_from_the_guard(dbkeep, hy):
    """After ``SET NAMES gbk`` the engine reads 0x81 0x60 as one character, while text decoded
    in the login's utf8mb4 would see a backtick opening a quoted name that hides what follows.
    The gateway reads such a statement in every candidate character set."""
    from pymysql.constants import COMMAND

    with master(dbkeep, hy) as conn:
        run(conn, "SET NAMES gbk")
        sql = (b"SELECT 1 \x81\x60 ; UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', 32768) "
               b"WHERE User = 'nobody-at-all' ; SELECT 2 -- \x81\x60")
        conn._execute_command(COMMAND.COM_QUERY, sql)
        with pytest.raises(pymysql.err.MySQLError) as exc:
            conn._read_query_result()
        assert exc.value.args[0] == 1227
        run(conn, "SET NAMES utf8mb4")
        assert run(conn, "SELECT 3") == ((3,),)


def test_com_init_db_to_mysql_is_tracked(dbkeep, hy):
    with master(dbkeep, hy) as conn:
        conn.select_db("mysql")  # COM_INIT_DB, not a statement
        assert error_of(conn, "UPDATE global_priv SET Priv = " + ADD_FILE_SUPER + " WHERE User = 'admin'")[0] == 1227
        conn.select_db("appdb")  # leaving mysql may fail unseen: unqualified names stay suspect
        assert error_of(conn, "UPDATE global_priv SET Priv = " + ADD_FILE_SUPER + " WHERE User = 'admin'")[0] == 1227
    assert_clean(dbkeep, hy)
