"""Client-side helpers for the integration tests: log in over an engine's unix socket as a user
would through the gateway, and capture the engine's error codes."""

from __future__ import annotations

import contextlib
import re

import psycopg
import pymysql


def my_connect(cluster, user: str | None = None, password: str | None = None, database: str | None = None,
               **kw) -> pymysql.Connection:
    return pymysql.connect(unix_socket=cluster.socket, user=user or cluster.spec.master_username,
                           password=cluster.password if password is None else password,
                           database=database, autocommit=True, connect_timeout=5, read_timeout=30,
                           **{"ssl_disabled": True, **kw})  # PyMySQL would otherwise use the engine's TLS


def my_rows(conn: pymysql.Connection, sql: str, params=None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def my_error(fn, *args, **kw) -> tuple[int, str]:
    """(errno, message) of the MySQL error ``fn`` raises."""
    try:
        fn(*args, **kw)
    except pymysql.MySQLError as exc:
        return exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
    raise AssertionError("no MySQL error raised")


def my_login_error(cluster, password: str | None = None, user: str | None = None) -> tuple[int, str]:
    def login():
        my_connect(cluster, user=user, password=password).close()
    return my_error(login)


def pg_connect(cluster, user: str | None = None, password: str | None = None, dbname: str = "appdb",
               **kw) -> psycopg.Connection:
    return psycopg.connect(host=cluster.run_dir, port=5432, user=user or cluster.spec.master_username,
                           password=cluster.password if password is None else password, dbname=dbname,
                           autocommit=True, connect_timeout=5, **kw)


def pg_rows(conn: psycopg.Connection, sql: str, params=None) -> list[tuple]:
    cur = conn.execute(sql, params)
    return list(cur.fetchall()) if cur.description else []


def pg_error(fn, *args, **kw) -> psycopg.Error:
    try:
        fn(*args, **kw)
    except psycopg.Error as exc:
        return exc
    raise AssertionError("no PostgreSQL error raised")


def pg_login_error(cluster, password: str | None = None, user: str | None = None, dbname: str = "appdb") -> str:
    def login():
        pg_connect(cluster, user=user, password=password, dbname=dbname).close()
    return str(pg_error(login))


@contextlib.contextmanager
def closing_all(*conns):
    try:
        yield conns
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()


# SPEC.md "Master user", Aurora MySQL version 2, MariaDB spelling (REPLICATION CLIENT = BINLOG
# MONITOR; LOAD FROM S3 / SELECT INTO S3 do not exist; GRANT OPTION is the WITH GRANT OPTION).
SPEC_V2_MARIADB = {
    "ALTER", "ALTER ROUTINE", "CREATE", "CREATE ROUTINE", "CREATE TEMPORARY TABLES", "CREATE USER",
    "CREATE VIEW", "DELETE", "DROP", "EVENT", "EXECUTE", "INDEX", "INSERT", "LOCK TABLES", "PROCESS",
    "REFERENCES", "RELOAD", "BINLOG MONITOR", "REPLICATION SLAVE", "SELECT", "SHOW DATABASES",
    "SHOW VIEW", "TRIGGER", "UPDATE",
}
_GLOBAL_GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON \*\.\* TO (?P<who>\S+)(?P<rest>.*)$")


def global_privileges(show_grants: list[tuple]) -> tuple[set[str], str]:
    for (line,) in show_grants:
        m = _GLOBAL_GRANT.match(line)
        if m:
            return {p.strip() for p in m.group("privs").split(",")}, m.group("rest")
    raise AssertionError(f"no global grant in {show_grants}")


def pg_role(cluster, name):
    rows = cluster.rdsadmin(
        "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, "
        "rolbypassrls, rolconnlimit, rolvaliduntil::text FROM pg_roles WHERE rolname = %s", (name,))
    assert rows, f"role {name} missing"
    keys = ("super", "inherit", "createrole", "createdb", "login", "replication", "bypassrls",
            "connlimit", "validuntil")
    return dict(zip(keys, rows[0]))


def members_of(cluster, member):
    return {(g, admin) for g, admin in cluster.rdsadmin(
        "SELECT g.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (member,))}
