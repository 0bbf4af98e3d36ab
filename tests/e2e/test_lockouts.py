"""No lockouts, through the API: damage the master user as a user would, show that it is locked
out, reset it with ``ModifyDBCluster --master-user-password``, and show that the new password
logs in with the default privileges and the data is intact (DESIGN.md, "No lockouts")."""

from __future__ import annotations

import json
import re

import psycopg
import pymysql
import pytest

from clusters import create_cluster, mysql, postgres, unique, wait_cluster
from test_rds_clusters import MASTER_MYSQL_PRIVILEGES, global_privileges

MY_PASSWORD = "Lock-Start-1"
PG_PASSWORD = "Lock-Start-2"


@pytest.fixture(scope="module")
def my(dbkeep):
    cluster = create_cluster(dbkeep, "aurora-mysql", unique("lockmy"), MY_PASSWORD)
    conn = mysql(dbkeep, cluster, "admin", MY_PASSWORD, "appdb")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE keep (id INT PRIMARY KEY, note VARCHAR(40))")
        cur.execute("INSERT INTO keep VALUES (1, 'before any damage')")
    conn.close()
    cluster["password"] = MY_PASSWORD
    return cluster


@pytest.fixture(scope="module")
def pg(dbkeep):
    cluster = create_cluster(dbkeep, "aurora-postgresql", unique("lockpg"), PG_PASSWORD)
    with postgres(dbkeep, cluster, "master", PG_PASSWORD) as conn:
        conn.execute("CREATE TABLE keep (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO keep VALUES (1, 'before any damage')")
    cluster["password"] = PG_PASSWORD
    return cluster


def reset(dbkeep, cluster, password: str) -> None:
    out = dbkeep.client("rds").modify_db_cluster(DBClusterIdentifier=cluster["DBClusterIdentifier"], MasterUserPassword=password, ApplyImmediately=True)
    assert out["DBCluster"]["Status"] in ("resetting-master-credentials", "available")
    wait_cluster(dbkeep, cluster["DBClusterIdentifier"])
    cluster["password"] = password


# --- MariaDB ---------------------------------------------------------------------------------------


def my_run(dbkeep, cluster, statements, user="admin", password=None):
    conn = mysql(dbkeep, cluster, user, password or cluster["password"])
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def my_helper(dbkeep, cluster, statements):
    my_run(dbkeep, cluster, ["CREATE USER IF NOT EXISTS 'helper'@'%' IDENTIFIED BY 'Helper-pass-1'",
                             "GRANT CREATE USER, SELECT, INSERT, UPDATE, DELETE ON *.* TO 'helper'@'%' WITH GRANT OPTION"])
    my_run(dbkeep, cluster, statements, user="helper", password="Helper-pass-1")


def my_login_error(dbkeep, cluster, **kw) -> int:
    with pytest.raises(pymysql.err.MySQLError) as exc:
        mysql(dbkeep, cluster, "admin", cluster["password"], **kw).close()
    return exc.value.args[0]


def my_statement_error(dbkeep, cluster, sql) -> int:
    conn = mysql(dbkeep, cluster, "admin", cluster["password"])
    try:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            with conn.cursor() as cur:
                cur.execute(sql)
        return exc.value.args[0]
    finally:
        conn.close()


def rdsadmin_refused(dbkeep, cluster) -> bool:
    """dbkeep's own login on the engine's socket is refused (the master damaged rdsadmin)."""
    secret = dbkeep.state_dir / "clusters" / cluster["DbClusterResourceId"] / "rdsadmin.secret"
    with pytest.raises(pymysql.err.MySQLError) as exc:
        mysql(dbkeep, cluster, "rdsadmin", secret.read_text().strip(), via="socket").close()
    return exc.value.args[0] in (1045, 4151)


MYSQL_CASES = {
    "account_lock": (["ALTER USER 'admin'@'%' ACCOUNT LOCK"], None, lambda d, c: my_login_error(d, c) == 4151),
    "password_expire": (["ALTER USER 'admin'@'%' PASSWORD EXPIRE"], None, lambda d, c: my_statement_error(d, c, "SELECT 1") == 1820),
    "drop_user": (["DROP USER 'admin'@'%'"], None, lambda d, c: my_login_error(d, c) == 1045),
    "rename_user": (None, ["RENAME USER 'admin'@'%' TO 'bob'@'%'"], lambda d, c: my_login_error(d, c) == 1045),
    "privileges_and_role_revoked": (["REVOKE `rds_superuser_role` FROM 'admin'@'%'", "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'admin'@'%'"],
                                    None, lambda d, c: my_statement_error(d, c, "SELECT * FROM appdb.keep") == 1142),
    "plugin_changed": (["ALTER USER 'admin'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('Forgotten-1')"], None,
                       lambda d, c: my_login_error(d, c) == 1045),
    "require_x509": (["ALTER USER 'admin'@'%' REQUIRE X509"], None, lambda d, c: my_login_error(d, c) == 1045),
    # over TLS (the default here) such an account still logs in: the lockout is for cleartext clients
    "require_ssl": (None, ["ALTER USER 'admin'@'%' REQUIRE SSL"], lambda d, c: my_login_error(d, c, ssl_disabled=True) == 1045),
    "max_user_connections": (["ALTER USER 'admin'@'%' WITH MAX_USER_CONNECTIONS 1"], None, None),
    "host_narrowed": (["RENAME USER 'admin'@'%' TO 'admin'@'10.0.0.1'"], None, lambda d, c: my_login_error(d, c) == 1045),
    # dbkeep's own hand: without repair, the reset itself would fail. The gateway refuses these
    # to the master (issue 12), so the damage is done on the engine's socket as rdsadmin itself
    "rdsadmin_locked": (["ALTER USER 'rdsadmin'@'localhost' ACCOUNT LOCK"], None, rdsadmin_refused),
    "rdsadmin_dropped_by_dml": (["DELETE FROM mysql.global_priv WHERE User = 'rdsadmin'", "FLUSH PRIVILEGES"], None,
                                rdsadmin_refused),
}


def my_rdsadmin(dbkeep, cluster, statements):
    secret = dbkeep.state_dir / "clusters" / cluster["DbClusterResourceId"] / "rdsadmin.secret"
    conn = mysql(dbkeep, cluster, "rdsadmin", secret.read_text().strip(), via="socket")
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


@pytest.mark.parametrize("case", list(MYSQL_CASES))
def test_mysql_lockout_then_api_reset(dbkeep, my, case):
    as_master, as_helper, broken = MYSQL_CASES[case]
    mark = len((dbkeep.state_dir / "audit.log").read_text().splitlines())
    if as_master and case.startswith("rdsadmin_"):
        my_rdsadmin(dbkeep, my, as_master)
    elif as_master:
        my_run(dbkeep, my, as_master)
    if as_helper:
        my_helper(dbkeep, my, as_helper)
    if broken is None:  # MAX_USER_CONNECTIONS 1: a second session is refused while one is open
        holder = mysql(dbkeep, my, "admin", my["password"])
        try:
            assert my_login_error(dbkeep, my) == 1226
        finally:
            holder.close()
    else:
        assert broken(dbkeep, my), f"{case}: the damage did not lock the master out"
    new_password = f"Reset-{case[:16]}-9"
    reset(dbkeep, my, new_password)
    reset(dbkeep, my, new_password)  # idempotent
    conn = mysql(dbkeep, my, "admin", new_password, "appdb")
    second = mysql(dbkeep, my, "admin", new_password, ssl_disabled=True)  # cleartext works again too
    try:
        assert global_privileges(conn) == MASTER_MYSQL_PRIVILEGES
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), CURRENT_ROLE()")
            assert cur.fetchone() == ("admin@%", "rds_superuser_role")
            cur.execute("SHOW GRANTS FOR 'admin'@'%'")
            grants = " ".join(r[0] for r in cur.fetchall())
            assert "REQUIRE" not in grants and "MAX_USER_CONNECTIONS" not in grants
            cur.execute("SELECT note FROM keep WHERE id = 1")
            assert cur.fetchone() == ("before any damage",)
            cur.execute("DROP USER IF EXISTS 'bob'@'%', 'helper'@'%', 'admin'@'10.0.0.1'")
    finally:
        conn.close()
        second.close()
    events = [json.loads(line) for line in (dbkeep.state_dir / "audit.log").read_text().splitlines()]
    resets = [e for e in events if e["event"] == "rds.master_reset" and e.get("cluster") == my["DBClusterIdentifier"]]
    assert resets and resets[-1]["verdict"] == "allow" and resets[-1]["principal"].endswith(":root")
    repairs = [e["reason"] for e in events[mark:] if e["event"] == "engine.repaired" and e.get("cluster") == my["DBClusterIdentifier"]]
    # dbkeep's own repair is a security event of its own, and only when there was one
    assert [r.split(" (")[0] for r in repairs] == (["rdsadmin restored"] if case.startswith("rdsadmin_") else []), repairs
    # the reason is whole: "(the engine refused it: 1045 Access denied … (using password: YES))" at a
    # start or reset, "(its account row was missing)" from the gateway's live hygiene
    for r in repairs:
        assert re.fullmatch(r"rdsadmin restored \((the engine refused it: \d{4} |its ).+\)", r) and r.count("(") == r.count(")"), r
    assert new_password not in (dbkeep.state_dir / "audit.log").read_text() + dbkeep.logs()


# --- PostgreSQL ------------------------------------------------------------------------------------


def pg_run(dbkeep, cluster, statements, user="master", password=None):
    with postgres(dbkeep, cluster, user, password or cluster["password"]) as conn:
        for s in statements:
            conn.execute(s)


def pg_helper(dbkeep, cluster, statements):
    pg_run(dbkeep, cluster, ["DROP ROLE IF EXISTS helper", "CREATE ROLE helper LOGIN CREATEROLE CREATEDB PASSWORD 'Helper-pass-1' IN ROLE rds_superuser"])
    pg_run(dbkeep, cluster, statements, user="helper", password="Helper-pass-1")


def pg_login_error(dbkeep, cluster) -> str:
    with pytest.raises(psycopg.OperationalError) as exc:
        postgres(dbkeep, cluster, "master", cluster["password"]).close()
    return str(exc.value)


def pg_not_member(dbkeep, cluster) -> bool:
    with postgres(dbkeep, cluster, "master", cluster["password"]) as conn:
        return conn.execute("SELECT pg_has_role('rds_superuser', 'MEMBER')").fetchone()[0] is False


def pg_drop_master(dbkeep, cluster):
    with postgres(dbkeep, cluster, "master", cluster["password"]) as conn:
        conn.execute("DROP ROLE IF EXISTS helper")
        conn.execute("CREATE ROLE helper LOGIN CREATEROLE CREATEDB PASSWORD 'Helper-pass-1' IN ROLE rds_superuser")
    with postgres(dbkeep, cluster, "helper", "Helper-pass-1") as h:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            h.execute("DROP ROLE master")  # the engine protects an owner ...
        h.execute("GRANT master TO helper")  # ... so a determined user moves everything first
        h.execute("REASSIGN OWNED BY master TO helper")
        h.execute("DROP OWNED BY master")
        h.execute("DROP ROLE master")


PG_CASES = {
    "nologin": (lambda d, c: pg_run(d, c, ["ALTER ROLE master NOLOGIN"]), lambda d, c: "not permitted to log in" in pg_login_error(d, c)),
    "valid_until_past": (lambda d, c: pg_run(d, c, ["ALTER ROLE master VALID UNTIL '2000-01-01'"]),
                         lambda d, c: "password authentication failed" in pg_login_error(d, c)),
    "connection_limit_0": (lambda d, c: pg_run(d, c, ["ALTER ROLE master CONNECTION LIMIT 0"]),
                           lambda d, c: "too many connections" in pg_login_error(d, c)),
    "rds_superuser_revoked": (lambda d, c: pg_run(d, c, ["REVOKE rds_superuser FROM master"]), pg_not_member),
    "renamed": (lambda d, c: pg_helper(d, c, ["ALTER ROLE master RENAME TO master_old"]),
                lambda d, c: "password authentication failed" in pg_login_error(d, c)),
    "dropped": (pg_drop_master, lambda d, c: "password authentication failed" in pg_login_error(d, c)),
}


@pytest.mark.parametrize("case", list(PG_CASES))
def test_postgres_lockout_then_api_reset(dbkeep, pg, case):
    damage, broken = PG_CASES[case]
    damage(dbkeep, pg)
    assert broken(dbkeep, pg), f"{case}: the damage did not lock the master out"
    new_password = f"Reset-{case[:16]}-9"
    reset(dbkeep, pg, new_password)
    reset(dbkeep, pg, new_password)
    with postgres(dbkeep, pg, "master", new_password) as conn:
        row = conn.execute("SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolconnlimit, rolvaliduntil::text "
                           "FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, True, True, True, True, -1, "infinity")
        assert conn.execute("SELECT pg_has_role('rds_superuser', 'MEMBER')").fetchone()[0] is True
        conn.execute("CREATE TABLE after_reset (i int)")
        conn.execute("DROP TABLE after_reset")
        if case != "dropped":
            assert conn.execute("SELECT note FROM keep WHERE id = 1").fetchone() == ("before any damage",)
    if case == "dropped":  # the data survived with its new owner
        with postgres(dbkeep, pg, "helper", "Helper-pass-1") as h:
            assert h.execute("SELECT note FROM keep WHERE id = 1").fetchone() == ("before any damage",)
    for leftover in ("master_old", "helper"):
        with postgres(dbkeep, pg, "master", new_password) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (leftover,)).fetchone():
                conn.execute(f"GRANT {leftover} TO master")
                conn.execute(f"REASSIGN OWNED BY {leftover} TO master")
                conn.execute(f"DROP OWNED BY {leftover}")
                conn.execute(f"DROP ROLE {leftover}")
