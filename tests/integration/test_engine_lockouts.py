"""The lockout catalogue ("No lockouts", DESIGN.md): every way a user can lock the master out,
done as a user would (as the master itself or as another privileged account it made), shown to
lock it out, then undone by ``reset_master`` with a new password — twice, to show idempotence —
after which the master logs in with exactly its default privileges and the data is intact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from engine_clients import (SPEC_V2_MARIADB, closing_all, global_privileges, members_of, my_connect, my_error,
                            my_login_error, my_rows, pg_connect, pg_error, pg_login_error, pg_role, pg_rows)

pytestmark = pytest.mark.engines

# --- MariaDB -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def my_data(mysql_cluster):
    with closing_all(my_connect(mysql_cluster, database="appdb")) as (conn,):
        my_rows(conn, "CREATE TABLE IF NOT EXISTS keep (id INT PRIMARY KEY, note VARCHAR(40))")
        my_rows(conn, "REPLACE INTO keep VALUES (1, 'before any damage')")
    return mysql_cluster


def _my_master(c, **kw):
    return my_connect(c, **kw)


def _helper(c):
    """Another privileged account made by the master (CREATE USER + the master's privileges)."""
    with closing_all(_my_master(c)) as (m,):
        my_rows(m, "CREATE USER IF NOT EXISTS 'helper'@'%' IDENTIFIED BY 'Helper-pass-1'")
        my_rows(m, "GRANT CREATE USER, SELECT, INSERT, UPDATE, DELETE, RELOAD ON *.* TO 'helper'@'%' WITH GRANT OPTION")
    return my_connect(c, user="helper", password="Helper-pass-1")


def _as_master(*stmts):
    def damage(c):
        with closing_all(_my_master(c)) as (m,):
            for s in stmts:
                my_rows(m, s)
    return damage


def _as_helper(*stmts):
    def damage(c):
        with closing_all(_helper(c)) as (h,):
            for s in stmts:
                my_rows(h, s)
    return damage


def _login_fails(*errnos):
    def check(c):
        errno, msg = my_login_error(c)
        assert errno in errnos, (errno, msg)
    return check


def _no_privileges(c):
    with closing_all(_my_master(c, database=None)) as (m,):
        assert my_error(my_rows, m, "SELECT * FROM appdb.keep")[0] == 1142
        assert my_error(my_rows, m, "CREATE DATABASE should_fail")[0] == 1044


def _max_user_connections(c):
    holder = _my_master(c)               # counted: it logged in under the limit
    with closing_all(holder):
        errno, msg = my_login_error(c)
        assert errno == 1226, msg


def _expired(c):
    """MariaDB lets a client that cannot handle expired passwords in, in "sandbox mode"
    (disconnect_on_expired_password=OFF): every statement but SET PASSWORD fails."""
    with closing_all(_my_master(c)) as (m,):
        errno, msg = my_error(my_rows, m, "SELECT 1")
        assert errno == 1820, msg


def _expect(c, sql, rows):
    """The damage is done: rdsadmin sees ``rows``."""
    assert c.rdsadmin(sql) == rows


def _rdsadmin_refused(c):
    from dbkeep.engines.mariadb import RdsadminRefused

    with pytest.raises(RdsadminRefused):
        c.rdsadmin("SELECT 1")


def _master_escalated(c):
    with closing_all(_my_master(c)) as (m,):
        privs, _ = global_privileges(my_rows(m, "SHOW GRANTS FOR 'admin'@'%'"))
    assert privs == {"ALL PRIVILEGES"}


@dataclass(frozen=True)
class Case:
    name: str
    damage: Callable
    broken: Callable


MYSQL_CASES = [
    Case("account_lock", _as_master("ALTER USER 'admin'@'%' ACCOUNT LOCK"), _login_fails(4151)),
    Case("password_expire", _as_master("ALTER USER 'admin'@'%' PASSWORD EXPIRE"), _expired),
    Case("drop_user_self", _as_master("DROP USER 'admin'@'%'"), _login_fails(1045)),
    Case("drop_user_by_other", _as_helper("DROP USER 'admin'@'%'"), _login_fails(1045)),
    Case("rename_user", _as_helper("RENAME USER 'admin'@'%' TO 'bob'@'%'"), _login_fails(1045)),
    Case("revoke_all_and_role", _as_master("REVOKE `rds_superuser_role` FROM 'admin'@'%'",
                                           "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'admin'@'%'"), _no_privileges),
    Case("role_gutted_default_unset", _as_master(
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM `rds_superuser_role`", "SET DEFAULT ROLE NONE FOR 'admin'@'%'",
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'admin'@'%'"), _no_privileges),
    Case("role_dropped", _as_master("DROP ROLE `rds_superuser_role`",
                                    "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'admin'@'%'"), _no_privileges),
    Case("plugin_ed25519", _as_master("ALTER USER 'admin'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('Forgotten-1')"),
         _login_fails(1045)),
    Case("require_x509", _as_master("ALTER USER 'admin'@'%' REQUIRE X509"), _login_fails(1045)),
    Case("require_ssl", _as_helper("ALTER USER 'admin'@'%' REQUIRE SSL"), _login_fails(1045)),
    Case("resource_limits", _as_master("ALTER USER 'admin'@'%' WITH MAX_USER_CONNECTIONS 1 "
                                       "MAX_QUERIES_PER_HOUR 1000 MAX_STATEMENT_TIME 0.5"), _max_user_connections),
    Case("host_narrowed", _as_master("RENAME USER 'admin'@'%' TO 'admin'@'10.0.0.1'"), _login_fails(1045)),
    # dbkeep's own hand, damaged with what the master holds (CREATE USER; DML on *.* and RELOAD):
    # the reset restarts the engine in repair mode to put rdsadmin back first
    Case("rdsadmin_locked", _as_master("ALTER USER 'rdsadmin'@'localhost' ACCOUNT LOCK"), _rdsadmin_refused),
    Case("rdsadmin_dropped", _as_master("DROP USER 'rdsadmin'@'localhost'"), _rdsadmin_refused),
    Case("rdsadmin_renamed", _as_master("RENAME USER 'rdsadmin'@'localhost' TO 'hijack'@'localhost'"),
         _rdsadmin_refused),
    Case("rdsadmin_password_written", _as_master(
        "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.authentication_string', "
        "'*0123456789ABCDEF0123456789ABCDEF01234567') WHERE User = 'rdsadmin'", "FLUSH PRIVILEGES"),
         _rdsadmin_refused),
    # not a lockout but its mirror: the master writing itself SUPER & co into the grant tables
    Case("master_self_escalated", _as_master(
        "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', 549755813887) "
        "WHERE User = 'admin' AND Host = '%'", "FLUSH PRIVILEGES"), _master_escalated),
    Case("role_self_escalated", _as_master(
        "CREATE ROLE IF NOT EXISTS sidekick", "GRANT sidekick TO 'admin'@'%'",
        "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', 549755813887) "
        "WHERE User = 'sidekick' AND Host = ''", "FLUSH PRIVILEGES"),
         lambda c: _expect(c, "SHOW GRANTS FOR sidekick", [("GRANT ALL PRIVILEGES ON *.* TO `sidekick` WITH GRANT OPTION",)])),
    # and code that runs as rdsadmin, written into the tables: dbkeep's procedure rewritten, an
    # event of the master's made rdsadmin's
    Case("rds_kill_rewritten", _as_master("UPDATE mysql.proc SET body = 'BEGIN END', body_utf8 = 'BEGIN END' "
                                          "WHERE db = 'mysql' AND name = 'rds_kill'"),
         lambda c: _expect(c, "SELECT body FROM mysql.proc WHERE name = 'rds_kill'", [(b"BEGIN END",)])),
    Case("event_made_rdsadmins", _as_master(
        "CREATE EVENT appdb.forged ON SCHEDULE EVERY 1 HOUR DO SELECT 1",
        "UPDATE mysql.event SET definer = 'rdsadmin@localhost' WHERE db = 'appdb' AND name = 'forged'"),
         lambda c: _expect(c, "SELECT definer FROM mysql.event WHERE name = 'forged'", [("rdsadmin@localhost",)])),
    Case("shadowed_by_localhost_accounts", _as_master(
        "CREATE USER 'admin'@'localhost' IDENTIFIED BY 'Someone-else-1'", "CREATE USER ''@'localhost'"),
         _login_fails(1045)),
]


def _my_verify(c, password):
    conn = my_connect(c, password=password, database="appdb")
    second = my_connect(c, password=password)          # no connection limit left
    with closing_all(conn, second):
        assert my_rows(conn, "SELECT CURRENT_USER(), CURRENT_ROLE()") == [("admin@%", "rds_superuser_role")]
        privs, rest = global_privileges(my_rows(conn, "SHOW GRANTS FOR 'admin'@'%'"))
        assert privs == SPEC_V2_MARIADB and "WITH GRANT OPTION" in rest
        assert "REQUIRE" not in rest and "MAX_" not in rest
        role_privs, _ = global_privileges(my_rows(conn, "SHOW GRANTS FOR rds_superuser_role"))
        assert role_privs == SPEC_V2_MARIADB
        assert my_rows(conn, "SELECT note FROM keep WHERE id = 1") == [("before any damage",)]
        my_rows(conn, "REPLACE INTO keep VALUES (2, 'after reset')")
        my_rows(conn, "DELETE FROM keep WHERE id = 2")
    assert my_login_error(c, password=c.password + "x")[0] == 1045
    plugin = c.rdsadmin("SELECT JSON_VALUE(Priv, '$.plugin'), JSON_VALUE(Priv, '$.account_locked') "
                        "FROM mysql.global_priv WHERE User = 'admin' AND Host = '%'")
    assert plugin[0][0] == "mysql_native_password" and plugin[0][1] in (None, "false", "0")
    procs = c.rdsadmin("SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql' "
                       "AND ROUTINE_NAME IN ('rds_kill', 'rds_kill_query')")
    assert procs == [(2,)]


def _my_cleanup(c):
    c.reset(c.password)
    c.rdsadmin("DROP ROLE IF EXISTS sidekick")
    for user, host in (("bob", "%"), ("helper", "%"), ("admin", "10.0.0.1"), ("admin", "localhost"),
                       ("", "localhost"), ("hijack", "localhost")):
        c.rdsadmin("DROP USER IF EXISTS %s@%s", (user, host))


@pytest.mark.parametrize("case", MYSQL_CASES, ids=[c.name for c in MYSQL_CASES])
def test_mysql_lockout_then_reset(my_data, case):
    c = my_data
    try:
        case.damage(c)
        case.broken(c)
        new_password = f"Reset-{case.name[:20]}-9"
        c.reset(new_password)
        _my_verify(c, new_password)
        c.reset(new_password)                              # idempotent
        _my_verify(c, new_password)
        if case.name == "rename_user":                     # the renamed account is left alone
            assert c.rdsadmin("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'bob'") == [(1,)]
        if case.name == "role_self_escalated":             # kept, but with nothing beyond the master's
            privs, _ = global_privileges(c.rdsadmin("SHOW GRANTS FOR sidekick"))
            assert privs == SPEC_V2_MARIADB
        if case.name == "rdsadmin_renamed":                # kept, but with nothing beyond the master's
            privs, _ = global_privileges(c.rdsadmin("SHOW GRANTS FOR 'hijack'@'localhost'"))
            assert privs == SPEC_V2_MARIADB
        assert c.rdsadmin("SELECT COUNT(*) FROM mysql.event") == [(0,)]
        body = c.rdsadmin("SELECT body FROM mysql.proc WHERE db = 'mysql' AND name = 'rds_kill'")[0][0]
        assert b"KILL CONNECTION" in body
        supers = c.rdsadmin("SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES "
                            "WHERE PRIVILEGE_TYPE IN ('SUPER', 'SHUTDOWN', 'FILE', 'CONNECTION ADMIN')")
        assert supers == [("'rdsadmin'@'localhost'",)]
        if case.name == "shadowed_by_localhost_accounts":
            assert c.rdsadmin("SELECT COUNT(*) FROM mysql.global_priv WHERE Host = 'localhost' "
                              "AND User IN ('admin', '')") == [(0,)]
    finally:
        _my_cleanup(c)
    _my_verify(c, c.password)


def test_mysql_start_repairs_rdsadmin_and_strips_self_granted_privileges(my_data):
    """Before, a master who locked rdsadmin made every later start fail (the readiness check logs
    in as rdsadmin). Now the start repairs it, and takes back what the master wrote itself."""
    c = my_data
    try:
        _as_master("ALTER USER 'rdsadmin'@'localhost' ACCOUNT LOCK",
                   "UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', 549755813887) "
                   "WHERE User = 'admin' AND Host = '%'", "FLUSH PRIVILEGES")(c)
        _rdsadmin_refused(c)
        _master_escalated(c)
        c.run(c.engines.driver.stop(c.spec.cluster_id))
        c.run(c.engines.driver.start(c.spec))
        assert c.rdsadmin("SELECT CURRENT_USER()") == [("rdsadmin@localhost",)]
        with closing_all(_my_master(c)) as (m,):  # the master's own password still works
            privs, _ = global_privileges(my_rows(m, "SHOW GRANTS FOR 'admin'@'%'"))
        assert privs == SPEC_V2_MARIADB
    finally:
        _my_cleanup(c)
    _my_verify(c, c.password)


def test_mysql_live_hygiene_takes_back_unloads_ends_sessions_and_restores_rdsadmin(my_data):
    """What the gateway runs after a statement that may have written the grant tables
    (``MariaDB.live_hygiene``), on a running engine: privileges only rdsadmin may hold are taken
    from the tables *and* from what the server has loaded, the sessions of the accounts (and of
    the role's holders) that held them are ended, rdsadmin's own rows are put back while it can
    still log in, and nothing else changes."""
    c = my_data
    driver = c.engines.driver.mariadb
    escalate = ("UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', "
                "CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) | 512 | 32768) WHERE User = %s")
    try:
        with closing_all(_my_master(c), _my_master(c)) as (m, bystander):
            assert c.run(driver.account_facts(c.spec.cluster_id, "admin"))[0] is True
            my_rows(m, escalate, ("admin",))
            my_rows(m, escalate, ("rds_superuser_role",))
            my_rows(m, "FLUSH PRIVILEGES")
            my_rows(m, "DELETE FROM mysql.global_priv WHERE User = 'rdsadmin'")  # not flushed: it still logs in
            my_rows(m, "DELETE FROM mysql.roles_mapping WHERE User = 'rdsadmin'")
            thread = my_rows(m, "SELECT CONNECTION_ID()")[0][0]
            report = c.run(driver.live_hygiene(c.spec.cluster_id, thread))
            assert any(r.startswith("rdsadmin restored") for r in report.repairs), report
            assert any("admin@%" in r and "rds_superuser_role" in r for r in report.repairs), report
            assert len(report.ended) == 2 and all(e.startswith("admin ") for e in report.ended), report
            for conn in (m, bystander):  # both master sessions were ended
                with pytest.raises(Exception):
                    my_rows(conn, "SELECT 1")
        assert c.rdsadmin("SELECT CURRENT_USER()") == [("rdsadmin@localhost",)]
        assert c.rdsadmin("SELECT Admin_option FROM mysql.roles_mapping WHERE User = 'rdsadmin'") == [("Y",)]
        with closing_all(_my_master(c)) as (m,):
            privs, _ = global_privileges(my_rows(m, "SHOW GRANTS FOR 'admin'@'%'"))
            assert privs == SPEC_V2_MARIADB
            assert my_error(my_rows, m, "SET GLOBAL general_log = 1")[0] == 1227
            my_rows(m, "SET ROLE rds_superuser_role")
            assert my_error(my_rows, m, "SET GLOBAL general_log = 1")[0] == 1227
        assert c.rdsadmin("SELECT GRANTEE FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE IN "
                          "('SUPER', 'FILE') AND GRANTEE <> \"'rdsadmin'@'localhost'\"") == []
        again = c.run(driver.live_hygiene(c.spec.cluster_id))
        assert again.repairs == [] and again.ended == []  # idempotent: nothing left to do
        with closing_all(my_connect(c, user="admin")) as (m,):
            my_rows(m, "CREATE USER IF NOT EXISTS 'reader'@'%' IDENTIFIED BY 'Reader-pass-1'")
            my_rows(m, "GRANT SELECT ON *.* TO 'reader'@'%'")
        assert c.run(driver.account_facts(c.spec.cluster_id, "reader"))[0] is False
        with closing_all(my_connect(c, user="admin")) as (m,):
            my_rows(m, "GRANT INSERT ON mysql.* TO 'reader'@'%'")
        assert c.run(driver.account_facts(c.spec.cluster_id, "reader"))[0] is True
    finally:
        with closing_all(my_connect(c, user="admin")) as (m,):
            my_rows(m, "DROP USER IF EXISTS 'reader'@'%'")
        _my_cleanup(c)
    _my_verify(c, c.password)


def test_mysql_reset_never_logs_the_password(my_data):
    c = my_data
    c.run(c.engines.driver.apply_dynamic_settings(c.spec, {"general_log": "1", "slow_query_log": "1",
                                                           "long_query_time": "0"}))
    secret = "Never-Logged-Pw-42"
    try:
        c.reset(secret)
        with closing_all(my_connect(c, password=secret)) as (m,):
            my_rows(m, "SELECT 'reset-log-probe'")
    finally:
        c.run(c.engines.driver.apply_dynamic_settings(c.spec, {"general_log": "0", "slow_query_log": "0",
                                                               "long_query_time": "10"}))
        c.reset(c.password)
    from dbkeep.engines.passwords import mysql_native_hash
    logs = "".join(p.read_text(errors="replace") for p in c.layout.log.iterdir() if p.is_file())
    assert "reset-log-probe" in logs, "the general log was not on: the check proves nothing"
    assert secret not in logs and mysql_native_hash(secret) not in logs


# --- PostgreSQL ----------------------------------------------------------------------------------------

PG_MASTER = "pgadmin"


def _pg_admin_sql(c, stmt, params=(), database="appdb"):
    return c.run(c.engines.driver.run_as_rdsadmin(c.spec.cluster_id, stmt, params, database=database))


@pytest.fixture(scope="module")
def pg_data(pg_cluster):
    with pg_connect(pg_cluster) as conn:
        pg_rows(conn, "CREATE TABLE IF NOT EXISTS keep (id int PRIMARY KEY, note text)")
        pg_rows(conn, "INSERT INTO keep VALUES (1, 'before any damage') ON CONFLICT DO NOTHING")
    return pg_cluster


def _pg_helper(c):
    with pg_connect(c) as m:
        pg_rows(m, "CREATE ROLE helper LOGIN CREATEROLE CREATEDB PASSWORD 'Helper-pass-1' IN ROLE rds_superuser")
    return pg_connect(c, user="helper", password="Helper-pass-1")


def _pg_as_master(*stmts):
    def damage(c):
        with pg_connect(c) as m:
            for s in stmts:
                pg_rows(m, s)
    return damage


def _pg_as_rdsadmin(*stmts):
    def damage(c):
        for s in stmts:
            c.rdsadmin(s)
    return damage


def _pg_as_helper(*stmts):
    def damage(c):
        with _pg_helper(c) as h:
            for s in stmts:
                pg_rows(h, s)
    return damage


def _pg_login_fails(text):
    def check(c):
        msg = pg_login_error(c)
        assert text in msg, msg
    return check


def _pg_drop_master(c):
    with _pg_helper(c) as h:
        err = pg_error(pg_rows, h, f"DROP ROLE {PG_MASTER}")
        assert err.sqlstate == "2BP01", err               # the engine protects an owner ...
        assert f'role "{PG_MASTER}" cannot be dropped because some objects depend on it' in str(err)
        assert "owner of database appdb" in (err.diag.message_detail or "")
        pg_rows(h, f"GRANT {PG_MASTER} TO helper")          # ... so a determined user moves it all first
        pg_rows(h, f"REASSIGN OWNED BY {PG_MASTER} TO helper")
        pg_rows(h, f"DROP OWNED BY {PG_MASTER}")
        pg_rows(h, f"DROP ROLE {PG_MASTER}")


def _pg_membership_gone(c):
    with pg_connect(c) as m:
        assert pg_rows(m, "SELECT pg_has_role('rds_superuser', 'MEMBER')") == [(False,)]


def _pg_cannot_create_db(c):
    with pg_connect(c) as m:
        err = pg_error(pg_rows, m, "CREATE DATABASE should_fail")
        assert "permission denied to create database" in str(err)


def _pg_read_only(c):
    with pg_connect(c) as m:
        err = pg_error(pg_rows, m, "CREATE TABLE should_fail (i int)")
        assert "read-only transaction" in str(err)


def _pg_iam_member(c):
    rows = _pg_admin_sql(c, f"SELECT pg_has_role('{PG_MASTER}', 'rds_iam', 'MEMBER'), "
                            f"pg_has_role('{PG_MASTER}', 'rds_ad', 'MEMBER')")
    assert rows == [(True, True)]


PG_CASES = [
    Case("nologin", _pg_as_master(f"ALTER ROLE {PG_MASTER} NOLOGIN"),
         _pg_login_fails(f'role "{PG_MASTER}" is not permitted to log in')),
    Case("valid_until_past", _pg_as_master(f"ALTER ROLE {PG_MASTER} VALID UNTIL '2000-01-01'"),
         _pg_login_fails("password authentication failed")),
    Case("connection_limit_0", _pg_as_master(f"ALTER ROLE {PG_MASTER} CONNECTION LIMIT 0"),
         _pg_login_fails(f'too many connections for role "{PG_MASTER}"')),
    Case("rds_superuser_revoked", _pg_as_master(f"REVOKE rds_superuser FROM {PG_MASTER}"), _pg_membership_gone),
    Case("attributes_dropped", _pg_as_master(f"ALTER ROLE {PG_MASTER} NOCREATEROLE NOCREATEDB NOINHERIT"),
         _pg_cannot_create_db),
    Case("renamed", _pg_as_helper(f"ALTER ROLE {PG_MASTER} RENAME TO {PG_MASTER}_old"),
         _pg_login_fails("password authentication failed")),
    Case("renamed_and_name_taken", _pg_as_helper(f"ALTER ROLE {PG_MASTER} RENAME TO {PG_MASTER}_old",
                                                 f"CREATE ROLE {PG_MASTER} NOLOGIN"),
         _pg_login_fails("password authentication failed")),
    Case("dropped", _pg_drop_master, _pg_login_fails("password authentication failed")),
    Case("role_settings", _pg_as_master(f"ALTER ROLE {PG_MASTER} SET default_transaction_read_only = on",
                                        f"ALTER ROLE {PG_MASTER} IN DATABASE appdb SET lock_timeout = '1ms'"),
         _pg_read_only),
    Case("iam_and_ad_membership", _pg_as_master(
        f"GRANT rds_iam TO {PG_MASTER}", "CREATE ROLE adgroup NOLOGIN", "GRANT rds_ad TO adgroup",
        f"GRANT adgroup TO {PG_MASTER}"), _pg_iam_member),
    # the engine refuses this to the master (dbkeep_protect.so, engines/pg_hook.py); done as
    # rdsadmin it stands for an engine that ran without the hook, and what the reset repairs
    Case("rds_superuser_damaged", _pg_as_rdsadmin(
        "REVOKE pg_monitor FROM rds_superuser", "ALTER ROLE rds_superuser NOCREATEROLE",
        f"REVOKE rds_superuser FROM {PG_MASTER}"), _pg_membership_gone),
]


def _pg_verify(c, password, *, owns_data=True):
    with pg_connect(c, password=password) as m:
        assert pg_rows(m, "SELECT current_user, pg_has_role('rds_superuser', 'MEMBER'), "
                          "pg_has_role('rds_iam', 'MEMBER'), pg_has_role('rds_ad', 'MEMBER')") == \
            [(PG_MASTER, True, False, False)]
        assert pg_rows(m, "SHOW default_transaction_read_only") == [("off",)]
        pg_rows(m, "CREATE TABLE after_reset (i int)")
        pg_rows(m, "DROP TABLE after_reset")
        if owns_data:
            assert pg_rows(m, "SELECT note FROM keep WHERE id = 1") == [("before any damage",)]
    with pg_connect(c, password=password, dbname="postgres"):
        pass
    assert pg_role(c, PG_MASTER) == dict(super=False, inherit=True, createrole=True, createdb=True, login=True,
                                       replication=False, bypassrls=False, connlimit=-1, validuntil="infinity")
    assert ("rds_superuser", False) in members_of(c, PG_MASTER)
    assert members_of(c, "rds_superuser") == {
        ("pg_monitor", False), ("pg_signal_backend", False), ("rds_replication", True), ("rds_password", True)}
    assert pg_role(c, "rds_superuser")["createrole"]
    assert c.rdsadmin("SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                      "WHERE r.rolname = %s", (PG_MASTER,)) == [(0,)]
    assert c.rdsadmin("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb'") == [(PG_MASTER,)]
    # the data is intact whoever owns it now
    assert _pg_admin_sql(c, "SELECT note FROM keep WHERE id = 1") == [("before any damage",)]
    assert "password authentication failed" in pg_login_error(c, password=password + "x")


def _pg_cleanup(c):
    c.reset(c.password)
    for role in (f"{PG_MASTER}_old", "helper"):
        if c.rdsadmin("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)):
            for db in ("appdb", "postgres"):
                _pg_admin_sql(c, f"REASSIGN OWNED BY {role} TO {PG_MASTER}", database=db)
                _pg_admin_sql(c, f"DROP OWNED BY {role}", database=db)
            c.rdsadmin(f"DROP ROLE {role}")
    c.rdsadmin("DROP ROLE IF EXISTS adgroup")
    c.reset(c.password)


@pytest.mark.parametrize("case", PG_CASES, ids=[c.name for c in PG_CASES])
def test_pg_lockout_then_reset(pg_data, case):
    c = pg_data
    oid_before = c.rdsadmin("SELECT oid FROM pg_roles WHERE rolname = %s", (PG_MASTER,))[0][0]
    try:
        case.damage(c)
        case.broken(c)
        new_password = f"Reset-{case.name[:20]}-9"
        c.reset(new_password)
        owns = case.name not in ("renamed_and_name_taken", "dropped")
        _pg_verify(c, new_password, owns_data=owns)
        c.reset(new_password)                               # idempotent
        _pg_verify(c, new_password, owns_data=owns)
        oid_after = c.rdsadmin("SELECT oid FROM pg_roles WHERE rolname = %s", (PG_MASTER,))[0][0]
        if case.name == "renamed":                           # renamed back: same role, same objects
            assert oid_after == oid_before
            assert c.rdsadmin("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"{PG_MASTER}_old",)) == []
        if case.name == "renamed_and_name_taken":            # the taker became the master; the old one is kept
            assert oid_after != oid_before
            assert c.rdsadmin("SELECT oid FROM pg_roles WHERE rolname = %s", (f"{PG_MASTER}_old",)) == [(oid_before,)]
        if case.name == "dropped":
            assert oid_after != oid_before
    finally:
        _pg_cleanup(c)
    _pg_verify(c, c.password)


def test_pg_reset_never_logs_the_password(pg_data):
    c = pg_data
    drv = c.engines.driver
    drv_settings = {"log_statement": "all", "log_min_duration_statement": "0", "log_connections": "1"}
    c.run(drv.apply_dynamic_settings(c.spec, drv_settings))
    secret = "Never-Logged-Pw-42"
    try:
        c.reset(secret)
        with pg_connect(c, password=secret) as m:
            pg_rows(m, "SELECT 'reset-log-probe'")
    finally:
        c.run(drv.apply_dynamic_settings(c.spec, {"log_statement": "none", "log_min_duration_statement": "-1",
                                                  "log_connections": "0"}))
        c.reset(c.password)
    logs = "".join(p.read_text(errors="replace") for p in c.layout.log.iterdir() if p.is_file())
    assert "reset-log-probe" in logs, "statement logging was not on: the check proves nothing"
    assert secret not in logs and "SCRAM-SHA-256$" not in logs


def test_pg_reset_keeps_existing_sessions(pg_data):
    c = pg_data
    with pg_connect(c) as m:
        c.reset(c.password)
        assert pg_rows(m, "SELECT 1") == [(1,)]
