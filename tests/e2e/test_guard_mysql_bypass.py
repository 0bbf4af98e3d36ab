"""rdsadmin and rds_superuser_role are untouchable on MariaDB (issue 12; SPEC.md, "rdsadmin").

A corpus of bypass attempts, run through ``dbkeep up``'s gateway as the master user: every
account statement that could drop, rename, lock, re-password or re-privilege rdsadmin or
change ``rds_superuser_role``, in every spelling (quotes, case, host part, comments, executable
comments, whitespace, multi-statements, sql_mode), through prepared statements, EXECUTE
IMMEDIATE, routines, events and triggers, and grant-table DML and DDL. Each is refused with
Aurora MySQL 3's ``ERROR 1227 (42000)`` naming SYSTEM_USER (or the grant-table rules' 1227),
audited, and followed by a check that rdsadmin's definition, password hash, grants and role
memberships and the role itself are unchanged. What the guard cannot read (EXECUTE IMMEDIATE or
PREPARE of an expression; a bare variable is read first, test_guard_mysql_prepare_variable.py)
runs, and the last line puts rdsadmin back and ends the session. KILL of rdsadmin's threads is refused by the gateway; ``mysql.rds_kill`` ends an
ordinary session.
"""

from __future__ import annotations

import json
import time

import pymysql
import pytest
from pymysql.constants import CLIENT

from clusters import create_cluster, mysql, unique
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from mysql_sessions import error_of, rdsadmin, run


PASSWORD = "Bypass-Pass-1"
SYSTEM_USER = "Access denied; you need (at least one of) the SYSTEM_USER privilege(s) for this operation"


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "mysql")


@pytest.fixture(scope="module")
def by(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("byp"), PASSWORD)


def master(dbkeep, cluster, **kw):
    return mysql(dbkeep, cluster, "admin", PASSWORD, "appdb", client_flag=CLIENT.MULTI_STATEMENTS, **kw)


PROBE = "dbkeep_privilege_mask"  # engines/reset.py's throwaway role
_PRIV_KEYS = ("access", "plugin", "authentication_string", "account_locked", "password_lifetime", "ssl_type",
              "max_questions", "max_updates", "max_connections", "max_user_connections", "max_statement_time")


def protected_state(dbkeep, cluster) -> dict:
    """rdsadmin's definition (its stored row and the engine's SHOW CREATE USER), password hash,
    grants and role memberships, and rds_superuser_role's row, grants and memberships."""
    with rdsadmin(dbkeep, cluster) as admin:
        state = {}
        for user, host in (("rdsadmin", "localhost"), ("rds_superuser_role", "")):
            [(priv,)] = run(admin, f"SELECT Priv FROM mysql.global_priv WHERE User = '{user}' AND Host = '{host}'")
            priv = json.loads(priv)
            state[user] = {key: priv.get(key) for key in _PRIV_KEYS}
            # (dbkeep's hygiene, still running after an earlier case, may hold its probe role a moment)
            state[user + " grants"] = sorted(r[0] for r in run(
                admin, f"SHOW GRANTS FOR {user}" + ("@localhost" if host else "")) if PROBE not in r[0])
            state[user + " roles"] = sorted(run(admin, "SELECT Host, User, Role, Admin_option FROM mysql.roles_mapping "
                                                       f"WHERE (User = '{user}' OR Role = '{user}') AND Role <> '{PROBE}'"))
            for table in ("db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv"):
                state[f"{user} {table}"] = run(admin, f"SELECT COUNT(*) FROM mysql.{table} WHERE User = '{user}'")
        state["show create"] = run(admin, "SHOW CREATE USER rdsadmin@localhost")
        state["grant tables"] = run(admin, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql' "
                                           "AND TABLE_NAME IN ('global_priv', 'db', 'tables_priv', 'columns_priv', "
                                           "'procs_priv', 'proxies_priv', 'roles_mapping')")
        return state


@pytest.fixture(scope="module")
def baseline(dbkeep, by):
    with master(dbkeep, by) as conn:  # objects some cases need
        run(conn, "CREATE TABLE IF NOT EXISTS appdb.tt (i INT)")
        run(conn, "CREATE ROLE IF NOT EXISTS app_role")
    return protected_state(dbkeep, by)


# --- refused by the guard: nothing reaches the engine ------------------------------------------------

RDSADMIN = {
    "drop": ["DROP USER rdsadmin@localhost"],
    "drop_quoted_upper_host": ["DROP USER 'rdsadmin'@'LOCALHOST'"],
    "drop_backticks": ["DROP USER `rdsadmin`@`localhost`"],
    "drop_no_host": ["DROP USER rdsadmin"],
    "drop_spaces": ["drop   user\n\trdsadmin @ localhost"],
    "drop_upper_name": ["DROP USER RDSADMIN@localhost"],
    "drop_in_list": ["DROP USER IF EXISTS 'nobody'@'%', rdsadmin@localhost"],
    "drop_comment": ["DROP /* rdsadmin? */ USER -- comment\n rdsadmin@localhost"],
    "drop_executable_comment": ["/*!DROP USER rdsadmin@localhost*/"],
    "drop_versioned_comment": ["/*!50000 DROP */ USER /* hidden */ rdsadmin@localhost"],
    "drop_mariadb_comment": ["/*M!100000 DROP USER */ rdsadmin@localhost"],
    "drop_multi_statement": ["SELECT 1; DROP USER rdsadmin@localhost"],
    "drop_trailing_space": ["DROP USER 'rdsadmin '@'localhost'"],
    "rename_from": ["RENAME USER rdsadmin@localhost TO 'evil'@'localhost'"],
    "rename_to": ["RENAME USER 'nobody'@'%' TO rdsadmin@'%'"],
    "lock": ["ALTER USER rdsadmin@localhost ACCOUNT LOCK"],
    "password": ["ALTER USER rdsadmin@localhost IDENTIFIED BY 'Stolen-1'"],
    "expire": ["ALTER USER IF EXISTS 'rdsadmin'@'localhost' PASSWORD EXPIRE"],
    "limits": ["ALTER USER rdsadmin@localhost WITH MAX_USER_CONNECTIONS 1"],
    "plugin": ["ALTER USER rdsadmin@localhost IDENTIFIED VIA ed25519 USING PASSWORD('x')"],
    "set_password": ["SET PASSWORD FOR rdsadmin@localhost = PASSWORD('Stolen-1')"],
    "grant": ["GRANT SELECT ON appdb.* TO rdsadmin@localhost"],
    "grant_second_grantee": ["GRANT SELECT ON appdb.* TO 'nobody2'@'%' IDENTIFIED BY 'Pw-12345', rdsadmin@localhost"],
    "grant_role": ["GRANT app_role TO rdsadmin@localhost"],
    "grant_proxy": ["GRANT PROXY ON rdsadmin@localhost TO 'admin'@'%'"],
    "revoke": ["REVOKE ALL PRIVILEGES, GRANT OPTION FROM rdsadmin@localhost"],
    "revoke_admin_option": ["REVOKE ADMIN OPTION FOR rds_superuser_role FROM rdsadmin@localhost"],
    "create_or_replace": ["CREATE OR REPLACE USER rdsadmin@localhost"],
    "default_role": ["SET DEFAULT ROLE NONE FOR rdsadmin@localhost"],
    "create_role_with_admin": ["CREATE ROLE evil_role WITH ADMIN rdsadmin@localhost"],
    "definer": ["CREATE DEFINER = rdsadmin@localhost PROCEDURE appdb.as_rdsadmin() SELECT 1"],
    "ansi_quotes": ["SET SESSION sql_mode = 'ANSI_QUOTES'", 'ALTER USER "rdsadmin"@"localhost" ACCOUNT LOCK'],
    "no_backslash_escapes": ["SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
                             "SELECT 'a\\'; DROP USER rdsadmin@localhost; -- '"],
    "prepare_literal": ["PREPARE s FROM 'DROP USER rdsadmin@localhost'"],
    "execute_immediate_literal": ["EXECUTE IMMEDIATE 'ALTER USER rdsadmin@localhost ACCOUNT LOCK'"],
    "procedure": ["CREATE PROCEDURE appdb.p_drop() BEGIN SELECT 1; DROP USER rdsadmin@localhost; END"],
    "event": ["CREATE EVENT appdb.e_lock ON SCHEDULE AT CURRENT_TIMESTAMP DO ALTER USER rdsadmin@localhost ACCOUNT LOCK"],
    "trigger": ["CREATE TRIGGER appdb.t_rev AFTER INSERT ON appdb.tt FOR EACH ROW "
                "SET PASSWORD FOR rdsadmin@localhost = PASSWORD('x')"],
    "kill_user": ["KILL USER rdsadmin"],
}
ROLE = {
    "drop_role": ["DROP ROLE rds_superuser_role"],
    "drop_role_backticks": ["DROP ROLE IF EXISTS `RDS_SUPERUSER_ROLE`"],
    "create_or_replace_role": ["CREATE OR REPLACE ROLE rds_superuser_role"],
    "revoke_from_role": ["REVOKE SELECT ON *.* FROM rds_superuser_role"],
    "grant_to_role": ["GRANT SELECT ON appdb.* TO 'rds_superuser_role'"],
    "grant_role_to_role": ["GRANT app_role TO rds_superuser_role"],
    "rename_role": ["RENAME USER rds_superuser_role TO evil"],
}
GRANT_TABLES = {
    "delete_rdsadmin_row": ["DELETE FROM mysql.global_priv WHERE User = 'rdsadmin'"],
    "delete_everyone": ["DELETE FROM mysql.global_priv"],
    "delete_or": ["DELETE FROM mysql.global_priv WHERE User = 'nobody' OR 1 = 1"],
    "delete_hex": ["DELETE FROM mysql.global_priv WHERE User = x'72647361646d696e'"],
    "update_admin_option": ["UPDATE mysql.roles_mapping SET Admin_option = 'N' WHERE User = 'rdsadmin'"],
    "delete_role_members": ["DELETE FROM mysql.roles_mapping WHERE Role = 'rds_superuser_role'"],
    "insert_role_grant": ["INSERT INTO mysql.roles_mapping VALUES ('', 'rds_superuser_role', 'app_role', 'N')"],
    "insert_select": ["INSERT INTO mysql.db SELECT * FROM mysql.db"],
    "computed_key": ["UPDATE mysql.db SET User = CONCAT('rds', 'admin') WHERE User = 'nobody'"],
    "rename_table": ["RENAME TABLE mysql.global_priv TO mysql.gp_x"],
    "truncate": ["TRUNCATE TABLE mysql.global_priv"],
    "drop_table": ["DROP TABLE mysql.global_priv"],
    "truncate_roles": ["TRUNCATE mysql.roles_mapping"],
}
CASES = {**{f"rdsadmin_{k}": v for k, v in RDSADMIN.items()}, **{f"role_{k}": v for k, v in ROLE.items()},
         **{f"table_{k}": v for k, v in GRANT_TABLES.items()}}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bypass_attempt_is_refused_and_changes_nothing(dbkeep, by, baseline, case):
    statements = CASES[case]
    mark = audit_mark(dbkeep)
    with master(dbkeep, by) as conn:
        for sql in statements[:-1]:
            run(conn, sql)
        errno, message = error_of(conn, statements[-1])
        assert errno == 1227, (errno, message)
        if not case.startswith("table_"):
            assert message == SYSTEM_USER
        assert run(conn, "SELECT 1") == ((1,),)  # the session goes on
    events = audit_events(dbkeep, "gateway.statement_refused", by["DBClusterIdentifier"], since=mark)
    assert len(events) == 1, events
    event = events[0]
    assert event["user"] == "admin" and event["rule"] and event["session"] and event["mysql_errno"] == 1227
    assert "Stolen-1" not in json.dumps(event) and "Pw-12345" not in json.dumps(event)
    assert protected_state(dbkeep, by) == baseline


def test_change_user_to_rdsadmin_is_refused(dbkeep, by, baseline):
    import mysql.connector

    conn = mysql.connector.connect(host="localhost", port=by["Port"], user="admin", password=PASSWORD,
                                   database="appdb", ssl_ca=str(dbkeep.state_dir / "ca.pem"), use_pure=True,
                                   connection_timeout=10)
    try:
        with pytest.raises(mysql.connector.Error) as exc:
            conn.cmd_change_user(username="rdsadmin", password="whatever")
        assert exc.value.errno == 1045
    finally:
        conn.close()
    assert protected_state(dbkeep, by) == baseline


# --- what the guard cannot read: the last line ------------------------------------------------------

# (a bare user variable is read before it runs: test_guard_mysql_prepare_variable.py)
LAST_LINE = {
    "execute_immediate_expression": ["EXECUTE IMMEDIATE CONCAT('ALTER USER rds', 'admin@localhost ACCOUNT LOCK')"],
    "prepare_from_expression": ["PREPARE s FROM CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', "
                                "'rds_superuser_role')", "EXECUTE s"],
    "role_grants_through_an_expression": ["SET @s = 'GRANT app_role TO rds_'",
                                          "EXECUTE IMMEDIATE CONCAT(@s, 'superuser_role')"],
}


@pytest.mark.parametrize("case", list(LAST_LINE))
def test_what_the_guard_cannot_read_is_put_back_and_the_session_ends(dbkeep, by, baseline, case):
    mark = audit_mark(dbkeep)
    conn = master(dbkeep, by)
    try:
        for sql in LAST_LINE[case]:
            run(conn, sql)
        deadline = time.monotonic() + 60
        while True:  # the check runs right after the statement; the session is then ended
            try:
                run(conn, "SELECT 1")
            except pymysql.err.MySQLError:
                break
            assert time.monotonic() < deadline, "the session was not ended"
            time.sleep(0.2)
    finally:
        conn.close()
    deadline = time.monotonic() + 60
    while not (events := audit_events(dbkeep, "gateway.protected_account_restored", by["DBClusterIdentifier"],
                                      since=mark)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert events[0]["user"] == "admin" and events[0]["repairs"], events
    deadline = time.monotonic() + 120
    while True:  # a restart in repair mode may still be finishing
        try:
            assert protected_state(dbkeep, by) == baseline
            break
        except pymysql.err.OperationalError:
            assert time.monotonic() < deadline
            time.sleep(1)
    with master(dbkeep, by) as again:  # the cluster serves the master again
        assert run(again, "SELECT 2") == ((2,),)


# --- KILL -----------------------------------------------------------------------------------------


def test_kill_of_rdsadmin_threads_is_refused_by_the_gateway(dbkeep, by, baseline):
    admin = rdsadmin(dbkeep, by)
    try:
        [(thread,)] = run(admin, "SELECT CONNECTION_ID()")
        mark = audit_mark(dbkeep)
        with master(dbkeep, by) as conn:
            for sql in (f"KILL {thread}", f"KILL CONNECTION {thread}", f"KILL QUERY {thread}",
                        f"KILL HARD QUERY ID {thread}", f"/*!KILL*/ {thread}"):
                assert error_of(conn, sql) == (1095, f"You are not owner of thread {thread}"), sql
            with pytest.raises(pymysql.err.MySQLError) as exc:
                conn.kill(thread)  # COM_PROCESS_KILL
            assert exc.value.args[0] == 1095
            assert run(conn, "SELECT 1") == ((1,),)
            assert error_of(conn, f"CALL mysql.rds_kill({thread})")[0] == 1095
        events = audit_events(dbkeep, "gateway.statement_refused", by["DBClusterIdentifier"], since=mark)
        assert len(events) == 6 and all(e["mysql_errno"] == 1095 and "rdsadmin" in e["rule"] for e in events), events
        assert run(admin, "SELECT 2") == ((2,),)  # rdsadmin's session lives on
    finally:
        admin.close()


def test_rds_kill_and_kill_of_ordinary_sessions_work(dbkeep, by):
    with master(dbkeep, by) as conn:
        run(conn, "CREATE USER IF NOT EXISTS 'victim'@'%' IDENTIFIED BY 'Victim-Pass-1'")
        run(conn, "GRANT SELECT ON appdb.* TO 'victim'@'%'")
    try:
        for how in ("rds_kill", "kill"):
            victim = mysql(dbkeep, by, "victim", "Victim-Pass-1", "appdb")
            [(thread,)] = run(victim, "SELECT CONNECTION_ID()")
            with master(dbkeep, by) as conn:
                if how == "rds_kill":
                    run(conn, f"CALL mysql.rds_kill({thread})")
                else:  # the master's own sessions: its own thread is its to end
                    other = master(dbkeep, by)
                    [(thread,)] = run(other, "SELECT CONNECTION_ID()")
                    run(conn, f"KILL {thread}")
                    victim.close()
                    victim = other
            with pytest.raises(pymysql.err.MySQLError):
                run(victim, "SELECT 1")
            victim.close()
        with master(dbkeep, by) as conn:
            assert error_of(conn, "CALL mysql.rds_kill_query(999999999)")[0] == 1094
    finally:
        with master(dbkeep, by) as conn:
            run(conn, "DROP USER IF EXISTS 'victim'@'%'")


def test_a_routine_written_by_an_uninspected_account_cannot_touch_rdsadmin_when_the_master_calls_it(
        dbkeep, by, baseline):
    """An application account (not inspected) writes an SQL SECURITY INVOKER procedure that would
    lock rdsadmin when the master runs it: before the master's CALL (plain, prepared, or built at
    run time) the gateway reads the cluster's routines and refuses it."""
    with master(dbkeep, by) as conn:
        run(conn, "CREATE USER IF NOT EXISTS 'coder'@'%' IDENTIFIED BY 'Coder-Pass-1'")
        run(conn, "GRANT SELECT, CREATE ROUTINE, ALTER ROUTINE, EXECUTE ON appdb.* TO 'coder'@'%'")
    try:
        with mysql(dbkeep, by, "coder", "Coder-Pass-1", "appdb") as dev:
            deadline = time.monotonic() + 30
            while True:  # refused while the session is inspected, until its account's facts arrive
                try:
                    run(dev, "CREATE OR REPLACE PROCEDURE appdb.innocent() SQL SECURITY INVOKER BEGIN "
                             "ALTER USER rdsadmin@localhost ACCOUNT LOCK; END")
                    break
                except pymysql.err.OperationalError as exc:
                    assert exc.args[0] == 1227 and time.monotonic() < deadline, exc
                    time.sleep(0.2)
        mark = audit_mark(dbkeep)
        with master(dbkeep, by) as conn:
            assert error_of(conn, "CALL appdb.innocent()") == (1227, SYSTEM_USER)
            run(conn, "SET @c = CONCAT('CALL appdb.inno', 'cent()')")
            assert error_of(conn, "EXECUTE IMMEDIATE @c")[0] == 1227
            assert run(conn, "SELECT 1") == ((1,),)
        events = audit_events(dbkeep, "gateway.statement_refused", by["DBClusterIdentifier"], since=mark)
        assert len(events) == 2 and all("appdb.innocent" in e["rule"] for e in events), events
        assert protected_state(dbkeep, by) == baseline
    finally:
        with master(dbkeep, by) as conn:
            run(conn, "DROP PROCEDURE IF EXISTS appdb.innocent")
            run(conn, "DROP USER IF EXISTS 'coder'@'%'")
