"""The master-user reset ("No lockouts", DESIGN.md): through rdsadmin, idempotent, seconds.

Whatever was done to the master user, a reset returns it to a working password login with its
default privileges. Nothing here ever sends a clear password: MariaDB gets the
``mysql_native_password`` hash, PostgreSQL a SCRAM-SHA-256 verifier, both computed in Python;
and the rdsadmin session turns its own logging off first (``sql_log_off``; ``log_statement =
'none'`` …) so not even a hash reaches a general or statement log. Existing sessions are not
dropped (as on RDS).

MariaDB — the master is ``'<master>'@'%'``:
- accounts that would *shadow* it for connections through the gateway (which reach the engine
  over its unix socket, i.e. as host ``localhost``): ``'<master>'@<host>`` or an anonymous
  ``''@<host>`` whose host pattern matches ``localhost`` — are dropped (MariaDB picks the most
  specific host first, so ``'admin'@'localhost'`` or ``''@'localhost'`` would take the login).
  Accounts of the master's name on other hosts (``'admin'@'10.0.0.1'``) are left alone: they
  cannot match a gateway connection.
- ``'<master>'@'%'`` is created if missing (dropped, renamed, host narrowed). A renamed account
  (``RENAME USER admin TO bob``) is left as it is, with whatever it holds: it is another user now.
- its authentication is replaced (plugin changes, ``unix_socket``, ed25519 → ``mysql_native_password``
  with the new hash), ``REQUIRE NONE``, every resource limit 0 (``MAX_USER_CONNECTIONS`` …,
  ``MAX_STATEMENT_TIME``), ``ACCOUNT UNLOCK``, ``PASSWORD EXPIRE DEFAULT`` (a new password also
  clears an expired one).
- the default privileges are granted again (grants are additive and MariaDB has no deny, so
  re-granting restores access without touching anything else the master holds);
  ``rds_superuser_role`` is recreated / re-granted its privileges if needed, granted again and
  set as the default role; ``mysql.rds_kill`` / ``rds_kill_query`` are recreated.

PostgreSQL — the master is the role named ``<master>``:
- if no role has that name: the role with the master's recorded OID (kept in ``cluster.json``)
  is renamed back if it still exists; otherwise a new role is created. If the name was taken
  by another role after a rename, that role becomes the master and the renamed one is left alone.
  Objects a dropped master owned survive: PostgreSQL refuses ``DROP ROLE`` of an owner
  (``role "x" cannot be dropped because some objects depend on it``), so they were reassigned
  first by whoever dropped it; the reset gives the new master back the initial database only.
- ``LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT -1
  VALID UNTIL 'infinity'`` and the new SCRAM verifier; role-level settings are reset
  (``ALTER ROLE … RESET ALL``, also per database) since e.g. ``statement_timeout = 1`` or
  ``default_transaction_read_only`` can lock it out as surely as ``NOLOGIN``.
- the rds_* roles are repaired (recreated, attributes and memberships restored), the master is
  granted rds_superuser again, and any membership path from the master to ``rds_iam``/``rds_ad``
  is cut (those make a login IAM-/Kerberos-only at the gateway).
- the host-access roles (``pg_execute_server_program``, ``pg_read_server_files``,
  ``pg_write_server_files``) are kept superuser with no members (``pg_lock_host_access``; also
  at every start).
- the initial database is given back to the master, with connections allowed and no limit, and
  CONNECT granted if the master lost it.
"""

from __future__ import annotations

import re

from psycopg import AsyncConnection, sql

from dbkeep.engines import bootstrap as b
from dbkeep.errors import EngineError

# --- MariaDB (runs in a worker thread on a pymysql cursor) ------------------------------------------


def _host_matches_localhost(pattern: str) -> bool:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, "localhost", flags=re.IGNORECASE) is not None


def mysql_quiet(cur) -> None:
    for stmt in b.MYSQL_QUIET_SESSION:
        cur.execute(stmt)


def mysql_ensure_role(cur) -> None:
    role = b.mysql_ident(b.MYSQL_ROLE)
    cur.execute(f"CREATE ROLE IF NOT EXISTS {role}")
    cur.execute(f"GRANT {b.MYSQL_MASTER_PRIVILEGE_LIST} ON *.* TO {role} WITH GRANT OPTION")


def mysql_ensure_procedures(cur) -> None:
    for text in b.MYSQL_KILL_PROCEDURES.values():
        cur.execute(text)


def mysql_restore_rdsadmin(cur, secret_hash: str) -> None:
    """``rdsadmin@localhost`` as bootstrap made it: dbkeep's secret, ALL PRIVILEGES WITH GRANT
    OPTION, unlocked, no limits, no expiry (also after a master damaged it; the session must be
    quiet)."""
    account = b.RDSADMIN_MYSQL
    cur.execute("CREATE USER IF NOT EXISTS %s@%s", account)
    cur.execute(
        "ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING %s REQUIRE NONE "
        "WITH MAX_QUERIES_PER_HOUR 0 MAX_UPDATES_PER_HOUR 0 MAX_CONNECTIONS_PER_HOUR 0 "
        "MAX_USER_CONNECTIONS 0 MAX_STATEMENT_TIME 0 ACCOUNT UNLOCK PASSWORD EXPIRE NEVER",
        (*account, secret_hash))
    cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", account)
    # Granting a role takes its ADMIN OPTION, which only the role's creator got: a new rdsadmin
    # (the old one dropped) gets it back. Written into roles_mapping, since nobody in a
    # skip-grant-tables session may grant it.
    cur.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s AND Host = ''", (b.MYSQL_ROLE,))
    if cur.fetchone():
        cur.execute("INSERT INTO mysql.roles_mapping (Host, User, Role, Admin_option) VALUES (%s, %s, %s, 'Y') "
                    "ON DUPLICATE KEY UPDATE Admin_option = 'Y'", (account[1], account[0], b.MYSQL_ROLE))
        cur.execute("FLUSH PRIVILEGES")


_MASK_PROBE = "dbkeep_privilege_mask"


def _master_access_mask(cur) -> int:
    """The ``access`` bits of the master's privileges WITH GRANT OPTION on this server: granted
    to a throwaway role and read back, so the bit layout is the server's own."""
    role = b.mysql_ident(_MASK_PROBE)
    cur.execute(f"DROP ROLE IF EXISTS {role}")
    cur.execute(f"CREATE ROLE {role}")
    try:
        cur.execute(f"GRANT {b.MYSQL_MASTER_PRIVILEGE_LIST} ON *.* TO {role} WITH GRANT OPTION")
        cur.execute("SELECT CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) FROM mysql.global_priv "
                    "WHERE User = %s AND Host = ''", (_MASK_PROBE,))
        return int(cur.fetchone()[0])
    finally:
        cur.execute(f"DROP ROLE IF EXISTS {role}")


def mysql_strip_beyond_master(cur) -> list[str]:
    """Take from every account and role but rdsadmin the global privileges the master does not
    have (SUPER, FILE, SHUTDOWN …). Only rdsadmin can grant them, so holding one means the grant
    tables were written directly; they are put right the same way. Returns what was changed."""
    mask = _master_access_mask(cur)
    cur.execute("SELECT User, Host FROM mysql.global_priv "
                "WHERE NOT (User = %s AND Host = %s) "
                "AND CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) & ~%s <> 0", (*b.RDSADMIN_MYSQL, mask))
    changed = [f"{user}@{host}" if host else user for user, host in cur.fetchall()]
    if changed:
        cur.execute("UPDATE mysql.global_priv SET Priv = JSON_SET(Priv, '$.access', "
                    "CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) & %s) "
                    "WHERE NOT (User = %s AND Host = %s) "
                    "AND CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) & ~%s <> 0", (mask, *b.RDSADMIN_MYSQL, mask))
        cur.execute("FLUSH PRIVILEGES")
    return changed


def mysql_remove_forged_definers(cur) -> list[str]:
    """Routines and events that run as rdsadmin are dbkeep's own procedures and nothing else:
    any other (written into mysql.proc or mysql.event with the master's DML) is dropped, and
    dbkeep's procedures are written again. Returns what was dropped."""
    own = tuple(b.MYSQL_KILL_PROCEDURES)
    cur.execute("SELECT db, name, type FROM mysql.proc WHERE definer LIKE 'rdsadmin@%%' "
                "AND NOT (db = 'mysql' AND type = 'PROCEDURE' AND name IN %s)", (own,))
    forged = [(db, name, kind) for db, name, kind in cur.fetchall()]
    cur.execute("SELECT db, name, 'EVENT' FROM mysql.event WHERE definer LIKE 'rdsadmin@%%'")
    forged += [(db, name, kind) for db, name, kind in cur.fetchall()]
    for db, name, kind in forged:
        cur.execute(f"DROP {kind} IF EXISTS {b.mysql_ident(db)}.{b.mysql_ident(name)}")
    mysql_ensure_procedures(cur)
    return [f"{kind.lower()} {db}.{name}" for db, name, kind in forged]


def mysql_hygiene(cur) -> list[str]:
    """What a master with DML on the grant tables may have written, undone; returns a line for
    each kind of repair made (for the audit event). The session must be quiet."""
    repairs = []
    stripped = mysql_strip_beyond_master(cur)
    if stripped:
        repairs.append(f"privileges only rdsadmin can grant taken from {', '.join(stripped)}")
    forged = mysql_remove_forged_definers(cur)
    if forged:
        repairs.append(f"routines and events running as rdsadmin dropped: {', '.join(forged)}")
    return repairs


def mysql_reset_master(cur, master: str, password_hash: str) -> list[str]:
    """Restore ``'<master>'@'%'`` (see the module docstring) after :func:`mysql_hygiene`, whose
    repairs it returns. The session must be quiet."""
    repairs = mysql_hygiene(cur)
    mysql_ensure_role(cur)
    cur.execute("SELECT User, Host FROM mysql.global_priv "
                "WHERE (User = %s OR User = '') AND Host NOT IN ('%%', '')", (master,))
    for user, host in cur.fetchall():
        if _host_matches_localhost(host):
            cur.execute("DROP USER %s@%s", (user, host))
    account = (master, b.MYSQL_MASTER_HOST)
    cur.execute("CREATE USER IF NOT EXISTS %s@%s", account)
    cur.execute(
        "ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING %s REQUIRE NONE "
        "WITH MAX_QUERIES_PER_HOUR 0 MAX_UPDATES_PER_HOUR 0 MAX_CONNECTIONS_PER_HOUR 0 "
        "MAX_USER_CONNECTIONS 0 MAX_STATEMENT_TIME 0 ACCOUNT UNLOCK PASSWORD EXPIRE DEFAULT",
        (*account, password_hash))
    cur.execute(f"GRANT {b.MYSQL_MASTER_PRIVILEGE_LIST} ON *.* TO %s@%s WITH GRANT OPTION", account)
    role = b.mysql_ident(b.MYSQL_ROLE)
    cur.execute(f"GRANT {role} TO %s@%s WITH ADMIN OPTION", account)
    cur.execute(f"SET DEFAULT ROLE {role} FOR %s@%s", account)
    return repairs


# --- PostgreSQL (async, on a psycopg connection as rdsadmin) -------------------------------------


async def pg_quiet(conn: AsyncConnection) -> None:
    for stmt in b.PG_QUIET_SESSION:
        await conn.execute(stmt)


async def pg_ensure_roles(conn: AsyncConnection) -> None:
    for role in b.PG_ROLES:
        name = sql.Identifier(role.name)
        cur = await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role.name,))
        row = await cur.fetchone()
        verb = "CREATE" if row is None else "ALTER"
        await conn.execute(sql.SQL(f"{verb} ROLE {{}} WITH {role.attributes}").format(name))
        for group, admin in role.member_of:
            await conn.execute(sql.SQL("GRANT {} TO {}" + (" WITH ADMIN OPTION" if admin else ""))
                               .format(sql.Identifier(group), name))


async def pg_lock_host_access(conn: AsyncConnection) -> None:
    """Make the host-access roles superuser and drop every membership in them (idempotent).
    ``ALTER ROLE`` refuses reserved roles, so the flag is set in ``pg_authid`` itself."""
    async with conn.transaction():
        await conn.execute("UPDATE pg_authid SET rolsuper = true WHERE rolname = ANY(%s) AND NOT rolsuper",
                           (list(b.PG_HOST_ACCESS_ROLES),))
        cur = await conn.execute(
            "SELECT g.rolname, r.rolname FROM pg_auth_members m "
            "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = ANY(%s)",
            (list(b.PG_HOST_ACCESS_ROLES),))
        for group, member in await cur.fetchall():
            await conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(member)))


async def _scalar(conn: AsyncConnection, query, params=()) -> object | None:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None


_PROTECTED_PG_ROLE = re.compile(r"^(pg_|rds_|rdsadmin$)")


async def _locate_master(conn: AsyncConnection, master: str, known_oid: int | None) -> int:
    cur = await conn.execute("SELECT oid, rolsuper FROM pg_roles WHERE rolname = %s", (master,))
    row = await cur.fetchone()
    if row is not None:
        if row[1]:
            raise EngineError(f"role {master!r} is a superuser: refusing to make it the master user")
        return int(row[0])
    ident = sql.Identifier(master)
    if known_oid is not None:
        cur = await conn.execute("SELECT rolname, rolsuper FROM pg_roles WHERE oid = %s", (known_oid,))
        old = await cur.fetchone()
        if old is not None and not old[1] and not _PROTECTED_PG_ROLE.match(old[0]):
            await conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(old[0]), ident))
            return known_oid
    await conn.execute(sql.SQL(f"CREATE ROLE {{}} WITH {b.PG_MASTER_ATTRIBUTES}").format(ident))
    return int(await _scalar(conn, "SELECT oid FROM pg_roles WHERE rolname = %s", (master,)))


async def pg_reset_master(conn: AsyncConnection, master: str, verifier: str, database: str | None,
                          known_oid: int | None) -> int:
    """Restore the master role (see the module docstring); returns its OID. The session must be
    quiet; runs in one transaction."""
    async with conn.transaction():
        await pg_ensure_roles(conn)
        await pg_lock_host_access(conn)
        oid = await _locate_master(conn, master, known_oid)
        ident = sql.Identifier(master)
        await conn.execute(sql.SQL(f"ALTER ROLE {{}} WITH {b.PG_MASTER_ATTRIBUTES} PASSWORD {{}}")
                           .format(ident, sql.Literal(verifier)))
        await conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(ident))
        cur = await conn.execute(
            "SELECT d.datname FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE s.setrole = %s", (oid,))
        for (dbname,) in await cur.fetchall():
            await conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(ident, sql.Identifier(dbname)))
        await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(b.PG_SUPERUSER_ROLE), ident))
        # Cut every membership edge into rds_iam / rds_ad reachable from the master.
        cur = await conn.execute(
            "SELECT g.rolname, r.rolname FROM pg_auth_members m "
            "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member "
            "WHERE g.rolname = ANY(%s) AND pg_has_role(%s::oid, m.member, 'MEMBER')",
            (list(b.PG_NON_PASSWORD_ROLES), oid))
        for group, member in await cur.fetchall():
            await conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(member)))
        if database:
            exists = await _scalar(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if exists:
                db = sql.Identifier(database)
                await conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, ident))
                await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true CONNECTION LIMIT -1")
                                   .format(db))
                if not await _scalar(conn, "SELECT has_database_privilege(%s::oid, %s, 'CONNECT')", (oid, database)):
                    await conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident))
    return oid
