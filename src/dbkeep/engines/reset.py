"""The master-user reset ("No lockouts", DESIGN.md): through rdsadmin, idempotent, seconds.

Whatever was done to the master user, a reset returns it to a working password login with its
default privileges. Nothing here ever sends a clear password: MariaDB gets the
``mysql_native_password`` hash, PostgreSQL a SCRAM-SHA-256 verifier, both computed in Python;
and the rdsadmin session turns its own logging off first (``sql_log_off``; ``log_statement =
'none'`` …) so not even a hash reaches a general or statement log. Existing sessions are not
dropped (as on RDS).

MariaDB — the master is ``'<master>'@'%'``:
- accounts that would *shadow* it for connections through the gateway -- ``'<master>'@<host>``
  or an anonymous ``''@<host>`` for any host but ``'%'`` -- are dropped (MariaDB picks the most
  specific host first, so ``'admin'@'10.0.0.1'`` or ``''@'10.%'`` would take the login). The
  gateway passes each client's real address to the engine (PROXY protocol), so any host
  pattern can match a gateway connection; ``localhost`` is what dbkeep's own socket
  connections are.
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

import json
import re
import time
from dataclasses import dataclass, field

from psycopg import AsyncConnection, sql

from dbkeep.engines import bootstrap as b
from dbkeep.errors import EngineError

# --- MariaDB (runs in a worker thread on a pymysql cursor) ------------------------------------------


def mysql_quiet(cur) -> None:
    for stmt in b.MYSQL_QUIET_SESSION:
        cur.execute(stmt)


def mysql_ensure_role(cur) -> None:
    role = b.mysql_ident(b.MYSQL_ROLE)
    cur.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s AND Host = ''", (b.MYSQL_ROLE,))
    if cur.fetchone() is None:
        # its row was deleted (an emptied table): its creator's mapping left behind would make
        # CREATE ROLE fail on a duplicate key, and the server's memory may still hold it
        cur.execute("DELETE FROM mysql.roles_mapping WHERE Role = %s AND User = %s AND Host = %s",
                    (b.MYSQL_ROLE, *b.RDSADMIN_MYSQL))
        cur.execute("FLUSH PRIVILEGES")
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


_RDSADMIN_EXPECTED_ZERO = ("ssl_type", "max_questions", "max_updates", "max_connections", "max_user_connections",
                           "max_statement_time", "password_lifetime")


def _all_access_mask(cur) -> int:
    """The ``access`` bits of ALL PRIVILEGES WITH GRANT OPTION on this server (as rdsadmin holds)."""
    role = b.mysql_ident(_MASK_PROBE)
    cur.execute(f"DROP ROLE IF EXISTS {role}")
    cur.execute(f"CREATE ROLE {role}")
    try:
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {role} WITH GRANT OPTION")
        cur.execute("SELECT CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) FROM mysql.global_priv "
                    "WHERE User = %s AND Host = ''", (_MASK_PROBE,))
        return int(cur.fetchone()[0])
    finally:
        cur.execute(f"DROP ROLE IF EXISTS {role}")


def mysql_check_rdsadmin(cur, secret_hash: str) -> list[str]:
    """rdsadmin's stored rows as bootstrap made them, put back live (the session is rdsadmin's
    own, logged in while the engine's memory still knows it): its ``global_priv`` row (all
    privileges, dbkeep's secret, unlocked, no expiry, no limits) and its ADMIN OPTION on
    ``rds_superuser_role``. Written with DML, since the account statements consult the
    in-memory copy, which a master's unflushed DML leaves behind; the caller flushes.
    Returns what was wrong."""
    user, host = b.RDSADMIN_MYSQL
    cur.execute("SELECT Priv FROM mysql.global_priv WHERE User = %s AND Host = %s", (user, host))
    row = cur.fetchone()
    wrong: list[str] = []
    full = _all_access_mask(cur)
    if row is None:
        wrong.append("its account row was missing")
    else:
        try:
            priv = json.loads(row[0])
        except (TypeError, ValueError):
            priv = {}
            wrong.append("its account row was unreadable")
        if priv:
            if int(priv.get("access", 0)) != full:
                wrong.append("its privileges were changed")
            if priv.get("plugin") != "mysql_native_password" or priv.get("authentication_string") != secret_hash:
                wrong.append("its authentication was changed")
            if priv.get("account_locked") or priv.get("password_last_changed", 1) == 0:
                wrong.append("it was locked or expired")
            if any(float(priv.get(key, 0) or 0) != 0 for key in _RDSADMIN_EXPECTED_ZERO):
                wrong.append("limits or TLS requirements were set on it")
    if wrong:
        cur.execute("SELECT VERSION()")
        major, minor, patch = (int(x) for x in re.match(r"(\d+)\.(\d+)\.(\d+)", cur.fetchone()[0]).groups())
        cur.execute(
            "REPLACE INTO mysql.global_priv (Host, User, Priv) VALUES (%s, %s, JSON_OBJECT("
            f"'access', %s, 'version_id', {major * 10000 + minor * 100 + patch}, 'plugin', 'mysql_native_password', "
            "'authentication_string', %s, 'password_last_changed', UNIX_TIMESTAMP(), 'ssl_type', 0, "
            "'ssl_cipher', '', 'x509_issuer', '', 'x509_subject', '', 'max_questions', 0, 'max_updates', 0, "
            "'max_connections', 0, 'max_user_connections', 0, 'max_statement_time', 0.0, "
            "'account_locked', false, 'password_lifetime', 0))", (host, user, full, secret_hash))
    cur.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s AND Host = ''", (b.MYSQL_ROLE,))
    if cur.fetchone():
        cur.execute("SELECT Admin_option FROM mysql.roles_mapping WHERE Host = %s AND User = %s AND Role = %s",
                    (host, user, b.MYSQL_ROLE))
        mapping = cur.fetchone()
        if mapping is None or mapping[0] != "Y":
            wrong.append(f"its ADMIN OPTION on {b.MYSQL_ROLE} was taken")
            cur.execute("INSERT INTO mysql.roles_mapping (Host, User, Role, Admin_option) VALUES (%s, %s, %s, 'Y') "
                        "ON DUPLICATE KEY UPDATE Admin_option = 'Y'", (host, user, b.MYSQL_ROLE))
    return wrong


_ADMIN_ONLY_PRIVILEGE_TYPES_SQL = (
    "SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE NOT IN ({}) "
    "AND GRANTEE <> %s")


def _holders_in_memory(cur) -> set[str]:
    """Accounts whose *loaded* privileges (what the server enforces now, whatever the tables
    say) go beyond the master's list; as user names."""
    allowed = (*b.MYSQL_MASTER_PRIVILEGES, "USAGE", "GRANT OPTION")
    cur.execute(_ADMIN_ONLY_PRIVILEGE_TYPES_SQL.format(", ".join(["%s"] * len(allowed))),
                (*allowed, "'{}'@'{}'".format(*b.RDSADMIN_MYSQL)))
    holders = set()
    for (grantee,) in cur.fetchall():
        name = grantee.rsplit("@", 1)[0].strip("'")
        holders.add(name)
    return holders


def _users_holding_roles(cur, roles: set[str]) -> set[str]:
    """Every account that holds one of ``roles``, directly or through other roles."""
    found, frontier, seen = set(), set(roles), set(roles)
    while frontier:
        cur.execute("SELECT User, Host FROM mysql.roles_mapping WHERE Role IN ({})".format(", ".join(["%s"] * len(frontier))),
                    tuple(frontier))
        frontier = set()
        for user, host in cur.fetchall():
            if host == "":  # a role granted to a role
                if user not in seen:
                    seen.add(user)
                    frontier.add(user)
            else:
                found.add(user)
    return found


def mysql_end_sessions(cur, users: set[str]) -> list[str]:
    """KILL CONNECTION of every live session of ``users`` but this one; returns what was ended."""
    users = {u for u in users if u and u != b.RDSADMIN_MYSQL[0]}
    if not users:
        return []
    cur.execute("SELECT ID, USER FROM information_schema.PROCESSLIST WHERE USER IN ({}) AND ID <> CONNECTION_ID()"
                .format(", ".join(["%s"] * len(users))), tuple(sorted(users)))
    ended = []
    for thread_id, user in cur.fetchall():
        try:
            cur.execute(f"KILL CONNECTION {int(thread_id)}")
        except Exception as exc:  # noqa: BLE001 - it may have ended meanwhile (1094)
            if not (getattr(exc, "args", None) and exc.args[0] == 1094):
                raise
            continue
        ended.append(f"{user} (thread {int(thread_id)})")
    return ended


def mysql_check_role(cur, master: str | None) -> list[str]:
    """``rds_superuser_role`` as dbkeep made it: present, the master's privileges WITH GRANT
    OPTION on ``*.*`` and nothing else of its own (no database-, table-, column- or routine-level
    rows, no roles granted to it), rdsadmin holding its ADMIN OPTION. A dropped role is made
    again and given back to ``master`` (its default role). Returns what was wrong."""
    role = b.MYSQL_ROLE
    wrong: list[str] = []
    cur.execute("SELECT CAST(IFNULL(JSON_VALUE(Priv, '$.access'), 0) AS UNSIGNED) FROM mysql.global_priv "
                "WHERE User = %s AND Host = ''", (role,))
    row = cur.fetchone()
    if row is None:
        wrong.append(f"{role} was missing")
        mysql_ensure_role(cur)
        if master:
            account = (master, b.MYSQL_MASTER_HOST)
            cur.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s AND Host = %s", account)
            if cur.fetchone():
                cur.execute(f"GRANT {b.mysql_ident(role)} TO %s@%s WITH ADMIN OPTION", account)
                cur.execute(f"SET DEFAULT ROLE {b.mysql_ident(role)} FOR %s@%s", account)
        return wrong
    if int(row[0]) != _master_access_mask(cur):
        wrong.append(f"the privileges of {role} were changed")
        cur.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {b.mysql_ident(role)}")
        mysql_ensure_role(cur)
    for table in ("db", "tables_priv", "columns_priv", "procs_priv", "roles_mapping"):
        cur.execute(f"DELETE FROM mysql.{table} WHERE User = %s AND Host = ''", (role,))
        if cur.rowcount:
            wrong.append(f"{role} was given {'roles' if table == 'roles_mapping' else 'grants in mysql.' + table}")
    return wrong


# The grant tables (and the view MariaDB 10.4+ keeps under the old name): without one of them the
# server refuses to start ("Can't open and lock privilege tables") or loses every account.
MYSQL_GRANT_TABLES = ("global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv",
                      "roles_mapping", "user")


def mysql_missing_grant_tables(cur) -> list[str]:
    """The grant tables (or the ``mysql.user`` view) that are not there."""
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME IN ({})"
                .format(", ".join(["%s"] * len(MYSQL_GRANT_TABLES))), MYSQL_GRANT_TABLES)
    present = {name.lower() for (name,) in cur.fetchall()}
    return [name for name in MYSQL_GRANT_TABLES if name not in present]


def mysql_put_back_renamed(cur, missing: list[str]) -> list[str]:
    """After the system tables were made again (empty): a table that was missing and has a
    renamed twin elsewhere (the same columns in the same order, rows in it) gets the twin back
    under its name, rows and all. Returns what was put back."""
    put_back = []
    for name in missing:
        if name == "user":  # a view over global_priv: made again, never renamed back
            continue
        cur.execute("SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME = %s", (name,))
        (columns,) = cur.fetchone()
        cur.execute("SELECT c.TABLE_SCHEMA, c.TABLE_NAME FROM information_schema.COLUMNS c "
                    "JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
                    "WHERE t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_SCHEMA NOT IN ('information_schema', "
                    "'performance_schema') AND NOT (c.TABLE_SCHEMA = 'mysql' AND c.TABLE_NAME IN ({})) "
                    "GROUP BY c.TABLE_SCHEMA, c.TABLE_NAME "
                    "HAVING GROUP_CONCAT(c.COLUMN_NAME ORDER BY c.ORDINAL_POSITION) = %s"
                    .format(", ".join(["%s"] * len(MYSQL_GRANT_TABLES))), (*MYSQL_GRANT_TABLES, columns))
        best, best_rows = None, 0
        for schema, table in cur.fetchall():
            cur.execute(f"SELECT COUNT(*) FROM {b.mysql_ident(schema)}.{b.mysql_ident(table)}")
            (rows,) = cur.fetchone()
            if rows > best_rows:
                best, best_rows = (schema, table), rows
        if best is None:
            continue
        twin = f"{b.mysql_ident(best[0])}.{b.mysql_ident(best[1])}"
        cur.execute(f"RENAME TABLE mysql.{name} TO mysql.{name}_dbkeep_empty, {twin} TO mysql.{name}")
        cur.execute(f"DROP TABLE mysql.{name}_dbkeep_empty")
        put_back.append(f"mysql.{name} put back from {best[0]}.{best[1]} ({best_rows} rows)")
    return put_back


def mysql_thread_user(cur, thread_id: int) -> str | None:
    """The account name running engine thread ``thread_id`` (None: no such thread)."""
    cur.execute("SELECT USER FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,))
    row = cur.fetchone()
    return None if row is None else str(row[0])


@dataclass
class LiveHygiene:
    """What :func:`mysql_live_hygiene` did: ``repairs`` as :func:`mysql_hygiene` returns them,
    ``ended`` the sessions it ended, ``protected`` what was wrong with rdsadmin or
    ``rds_superuser_role`` and was put back (the gateway ends the session that did it)."""

    repairs: list[str]
    ended: list[str]
    protected: list[str] = field(default_factory=list)


def mysql_live_hygiene(cur, secret_hash: str, master: str | None = None) -> LiveHygiene:
    """:func:`mysql_hygiene` on a running engine, right after a session may have written the
    grant tables: rdsadmin's rows are checked first (and put back while rdsadmin can still log
    in), then privileges only rdsadmin may hold are taken back from the tables *and* from what
    the server has loaded (FLUSH PRIVILEGES, always: a flush or GRANT may already have loaded
    them), and every live session of an account that held one is ended — a session keeps the
    global privileges it had at login or at its last SET ROLE. The session must be quiet."""
    repairs = []
    protected = [f"rdsadmin: {what}" for what in mysql_check_rdsadmin(cur, secret_hash)]
    if protected:
        repairs.append(f"rdsadmin restored ({'; '.join(w.split(': ', 1)[1] for w in protected)})")
    in_memory = _holders_in_memory(cur)
    stripped = mysql_strip_beyond_master(cur)
    if stripped:
        repairs.append(f"privileges only rdsadmin can grant taken from {', '.join(stripped)}")
    if b.MYSQL_ROLE in stripped:
        protected.append(f"{b.MYSQL_ROLE} was given privileges only rdsadmin can grant")
    forged = mysql_remove_forged_definers(cur)
    if forged:
        repairs.append(f"routines and events running as rdsadmin dropped: {', '.join(forged)}")
    cur.execute("FLUSH PRIVILEGES")
    # after the strip (which ends the sessions of the role's holders): what else of the role changed
    role = mysql_check_role(cur, master)
    if role:
        repairs.append(f"{b.MYSQL_ROLE} restored ({'; '.join(role)})")
        protected += role
        cur.execute("FLUSH PRIVILEGES")
    if in_memory - {s.split("@", 1)[0] for s in stripped}:
        repairs.append(f"privileges only rdsadmin can grant unloaded from {', '.join(sorted(in_memory))}")
    accounts = {s.split("@", 1)[0] for s in stripped if "@" in s}
    roles = {s for s in stripped if "@" not in s}
    users = accounts | in_memory | _users_holding_roles(cur, roles)
    ended = mysql_end_sessions(cur, users) if (stripped or in_memory) else []
    return LiveHygiene(repairs, ended, protected)


def mysql_wait_idle(cur, thread_id: int, deadline: float) -> bool:
    """Wait until engine thread ``thread_id`` has finished its command (or is gone): True, or
    False when ``deadline`` (``time.monotonic()``) passed first."""
    pause = 0.002
    while True:
        cur.execute("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,))
        row = cur.fetchone()
        if row is None or row[0] in ("Sleep", "Killed"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


# Global privileges that never reach the grant tables or run code (MariaDB 10.11's bits:
# SELECT, PROCESS, REFERENCES, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE,
# REPLICATION SLAVE, BINLOG MONITOR, SHOW VIEW, SLAVE MONITOR). An account with any other, or
# with any privilege on the mysql schema, is one whose sessions the gateway inspects.
_READ_ONLY_ACCESS = sum(1 << bit for bit in (0, 8, 11, 14, 16, 17, 18, 19, 20, 22, 38))


def mysql_account_facts(cur, user: str) -> tuple[bool, str]:
    """(whether a gateway login as ``user`` may write the ``mysql`` schema or hold more than
    read-only global privileges, directly or through any role it may SET; the server's global
    sql_mode). A gateway login reaches the engine under the client's real address (PROXY
    protocol), which may match any host pattern: every account of that name (or anonymous) counts."""
    cur.execute("SELECT User, Host, CAST(IFNULL(JSON_VALUE(Priv, '$.access'), 0) AS UNSIGNED) FROM mysql.global_priv "
                "WHERE User IN (%s, '') AND Host <> ''", (user,))
    accounts = [(u, h, int(a)) for u, h, a in cur.fetchall()]
    access = 0
    grantees = set()
    for u, h, a in accounts:
        access |= a
        grantees.add((u, h))
    frontier = set(grantees)
    while frontier:
        clause = " OR ".join(["(User = %s AND Host = %s)"] * len(frontier))
        cur.execute(f"SELECT Role FROM mysql.roles_mapping WHERE {clause}", tuple(x for pair in frontier for x in pair))
        frontier = {(role, "") for (role,) in cur.fetchall()} - grantees
        grantees |= frontier
    roles = [u for u, h in grantees if h == ""]
    if roles:
        cur.execute("SELECT CAST(IFNULL(JSON_VALUE(Priv, '$.access'), 0) AS UNSIGNED) FROM mysql.global_priv "
                    "WHERE Host = '' AND User IN ({})".format(", ".join(["%s"] * len(roles))), tuple(roles))
        for (a,) in cur.fetchall():
            access |= int(a)
    privileged = bool(access & ~_READ_ONLY_ACCESS)
    if not privileged and grantees:
        clause = " OR ".join(["(User = %s AND Host = %s)"] * len(grantees))
        params = tuple(x for pair in grantees for x in pair)
        cur.execute(f"SELECT 1 FROM mysql.db WHERE 'mysql' LIKE Db AND ({clause}) LIMIT 1", params)
        privileged = cur.fetchone() is not None
        for table in ("tables_priv", "columns_priv", "procs_priv"):
            if not privileged:
                cur.execute(f"SELECT 1 FROM mysql.{table} WHERE Db = 'mysql' AND ({clause}) LIMIT 1", params)
                privileged = cur.fetchone() is not None
    cur.execute("SELECT @@GLOBAL.sql_mode")
    return privileged, str(cur.fetchone()[0] or "")


def mysql_routines(cur) -> tuple[tuple, list[tuple[str, str, str, str, str, str]]]:
    """(a fingerprint, every stored routine as (db, name, type, definer, security type, body))."""
    cur.execute("SELECT COUNT(*), MAX(modified), SUM(CRC32(body)), SUM(CRC32(definer)), "
                "SUM(security_type = 'INVOKER') FROM mysql.proc")
    fingerprint = tuple(str(v) for v in cur.fetchone())
    cur.execute("SELECT db, name, type, definer, security_type, CONVERT(body USING utf8mb4) FROM mysql.proc")
    return fingerprint, [(db, name, kind, definer, security, body or "")
                         for db, name, kind, definer, security, body in cur.fetchall()]


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
    # role grants of accounts or roles that no longer exist (global_priv emptied or its rows
    # deleted): granting the role to the master again would hit their keys
    cur.execute("DELETE FROM mysql.roles_mapping WHERE NOT EXISTS (SELECT 1 FROM mysql.global_priv g "
                "WHERE g.User = mysql.roles_mapping.User AND g.Host = mysql.roles_mapping.Host)")
    orphans = cur.rowcount
    cur.execute("DELETE FROM mysql.roles_mapping WHERE NOT EXISTS (SELECT 1 FROM mysql.global_priv r "
                "WHERE r.User = mysql.roles_mapping.Role AND r.Host = '')")
    orphans += cur.rowcount
    if orphans:
        cur.execute("FLUSH PRIVILEGES")
        repairs.append(f"{orphans} role grants of accounts or roles that no longer exist removed")
    mysql_ensure_role(cur)
    cur.execute("SELECT User, Host FROM mysql.global_priv "
                "WHERE (User = %s OR User = '') AND Host NOT IN ('%%', '')", (master,))
    for user, host in cur.fetchall():
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
