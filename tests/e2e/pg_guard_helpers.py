"""Helpers for the PostgreSQL statement guard's end-to-end tests."""

from __future__ import annotations

import psycopg

from clusters import postgres

PASSWORD = "Guard-Pass-1"
PROTECTED = ("rdsadmin", "rds_superuser", "rds_password", "rds_iam", "rds_ad", "rds_replication")

_SNAPSHOT = """
SELECT a.oid, a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin, a.rolreplication,
       a.rolbypassrls, a.rolconnlimit, a.rolpassword, a.rolvaliduntil,
       ARRAY(SELECT g.rolname || ':' || m.admin_option FROM pg_auth_members m JOIN pg_authid g ON g.oid = m.roleid
             WHERE m.member = a.oid ORDER BY 1),
       ARRAY(SELECT r.rolname FROM pg_auth_members m JOIN pg_authid r ON r.oid = m.member
             WHERE m.roleid = a.oid AND a.rolname = 'rdsadmin' ORDER BY 1),
       ARRAY(SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s WHERE s.setrole = a.oid ORDER BY 1),
       (SELECT d.description FROM pg_shdescription d WHERE d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass)
FROM pg_authid a WHERE a.rolname = ANY(%s)
ORDER BY a.oid
"""


def rdsadmin(dbkeep, cluster) -> psycopg.Connection:
    return postgres(dbkeep, cluster, "rdsadmin", "", "postgres", via="socket")


def snapshot(dbkeep, cluster) -> list[tuple]:
    """rdsadmin and the protected roles as the engine holds them (definition, attributes,
    password hash, memberships, settings, comment)."""
    with rdsadmin(dbkeep, cluster) as conn:
        # by name, without the OID: a dropped role comes back as a new one
        return sorted(tuple(r)[1:] for r in conn.execute(_SNAPSHOT, (list(PROTECTED),)).fetchall())


def login(dbkeep, cluster, user: str, password: str, database: str = "appdb", **kw) -> psycopg.Connection:
    """A login through the gateway with verified TLS (``kw``: more libpq parameters)."""
    return psycopg.connect(host="localhost", port=cluster["Port"], user=user, password=password, dbname=database,
                           sslmode="verify-full", sslrootcert=str(dbkeep.state_dir / "ca.pem"), connect_timeout=10,
                           autocommit=True, **kw)


def master(dbkeep, cluster, **kw) -> psycopg.Connection:
    return login(dbkeep, cluster, "master", PASSWORD, **kw)


def error_of(conn: psycopg.Connection, sql: str, params=None) -> psycopg.Error | None:
    try:
        conn.execute(sql, params)
    except psycopg.Error as exc:
        return exc
    return None
