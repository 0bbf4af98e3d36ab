"""The Aurora-style bootstrap, as data: accounts, roles, privileges and procedures (SPEC.md).

MariaDB (aurora-mysql):
- ``rdsadmin@localhost`` — ALL PRIVILEGES WITH GRANT OPTION; dbkeep's own hand. It logs in with
  ``mysql_native_password`` and a random 256-bit secret kept in a 0600 file beside the data
  directory (see ``mariadb.py`` for why not ``unix_socket``).
- the master ``'<master>'@'%'`` — exactly Aurora MySQL version 2's list in MariaDB spelling
  (REPLICATION CLIENT is BINLOG MONITOR; LOAD FROM S3 / SELECT INTO S3 do not exist) on ``*.*``
  WITH GRANT OPTION, plus the role ``rds_superuser_role`` holding the same, granted (with ADMIN
  OPTION, so the master can hand it on) and set as its DEFAULT ROLE. No SUPER, CONNECTION ADMIN,
  FILE or SHUTDOWN: a plain ``KILL`` of another user's thread fails with MariaDB's own
  ``ERROR 1095 (HY000): You are not owner of thread N``.
- ``mysql.rds_kill(id)`` / ``mysql.rds_kill_query(id)``: DEFINER rdsadmin, SQL SECURITY DEFINER;
  refuse rdsadmin's (and the server's own) threads with 1095 and unknown ids with 1094, the texts
  MariaDB itself uses.
- no anonymous accounts, no ``test`` database, no ``root``: nobody but rdsadmin holds all
  privileges.

PostgreSQL (aurora-postgresql):
- ``rdsadmin`` is the bootstrap superuser made by ``initdb -U rdsadmin``, reachable only by
  ``peer`` on the private socket through a pg_ident map from dbkeep's OS user.
- NOLOGIN roles ``rds_password``, ``rds_replication``, ``rds_iam``, ``rds_ad`` and
  ``rds_superuser`` (CREATEROLE CREATEDB; member of pg_monitor, pg_signal_backend and — with
  ADMIN OPTION, as it grants them on — rds_replication and rds_password).
- the master: ``LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION VALID UNTIL
  'infinity'``, member of rds_superuser, owner of the initial database. The public schema keeps
  PostgreSQL 15's default (no CREATE for PUBLIC).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- MariaDB ----------------------------------------------------------------------------------

RDSADMIN_MYSQL = ("rdsadmin", "localhost")
MYSQL_MASTER_HOST = "%"
MYSQL_ROLE = "rds_superuser_role"

# Aurora MySQL version 2's master privileges, in MariaDB spelling (SHOW GRANTS order).
MYSQL_MASTER_PRIVILEGES: tuple[str, ...] = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "PROCESS", "REFERENCES",
    "INDEX", "ALTER", "SHOW DATABASES", "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE",
    "REPLICATION SLAVE", "BINLOG MONITOR", "CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE",
    "ALTER ROUTINE", "CREATE USER", "EVENT", "TRIGGER",
)
MYSQL_MASTER_PRIVILEGE_LIST = ", ".join(MYSQL_MASTER_PRIVILEGES)

# Threads rds_kill refuses: dbkeep's own and the server's.
MYSQL_PROTECTED_THREAD_USERS = ("rdsadmin", "system user", "event_scheduler")

_KILL_PROCEDURE = """\
CREATE OR REPLACE DEFINER = `rdsadmin`@`localhost` PROCEDURE `mysql`.`{name}`(IN thread_id BIGINT UNSIGNED)
    MODIFIES SQL DATA
    SQL SECURITY DEFINER
    COMMENT '{comment}'
BEGIN
    DECLARE n INT DEFAULT 0;
    DECLARE thread_user VARCHAR(128) DEFAULT NULL;
    DECLARE msg VARCHAR(128);
    SELECT COUNT(*), MAX(`USER`) INTO n, thread_user
      FROM information_schema.PROCESSLIST WHERE `ID` = thread_id;
    IF n = 0 THEN
        SET msg = CONCAT('Unknown thread id: ', IFNULL(thread_id, 'NULL'));
        SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1094, MESSAGE_TEXT = msg;
    END IF;
    IF thread_user IN ({protected}) THEN
        SET msg = CONCAT('You are not owner of thread ', thread_id);
        SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1095, MESSAGE_TEXT = msg;
    END IF;
    {kill} thread_id;
END"""

_PROTECTED = ", ".join(f"'{u}'" for u in MYSQL_PROTECTED_THREAD_USERS)

MYSQL_KILL_PROCEDURES: dict[str, str] = {
    "rds_kill": _KILL_PROCEDURE.format(
        name="rds_kill", kill="KILL CONNECTION", protected=_PROTECTED,
        comment="dbkeep: end a connection (Aurora mysql.rds_kill)"),
    "rds_kill_query": _KILL_PROCEDURE.format(
        name="rds_kill_query", kill="KILL QUERY", protected=_PROTECTED,
        comment="dbkeep: end the statement a connection runs (Aurora mysql.rds_kill_query)"),
}

# Session settings of every rdsadmin session that handles secrets: nothing reaches a log.
MYSQL_QUIET_SESSION = (
    "SET SESSION sql_log_off = 1",
    "SET SESSION sql_log_bin = 0",
    "SET SESSION log_slow_query = 0",
)


def mysql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# --- PostgreSQL -------------------------------------------------------------------------------

RDSADMIN_PG = "rdsadmin"
PG_MASTER_ATTRIBUTES = ("LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS "
                        "CONNECTION LIMIT -1 VALID UNTIL 'infinity'")


@dataclass(frozen=True)
class PgRole:
    name: str
    attributes: str
    member_of: tuple[tuple[str, bool], ...] = ()    # (role, with admin option)


# In creation order (a role's groups come before it).
PG_ROLES: tuple[PgRole, ...] = (
    PgRole("rds_password", "NOLOGIN NOSUPERUSER INHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"),
    PgRole("rds_replication", "NOLOGIN NOSUPERUSER INHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"),
    PgRole("rds_iam", "NOLOGIN NOSUPERUSER INHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"),
    PgRole("rds_ad", "NOLOGIN NOSUPERUSER INHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"),
    PgRole("rds_superuser", "NOLOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION NOBYPASSRLS",
           member_of=(("pg_monitor", False), ("pg_signal_backend", False),
                      ("rds_replication", True), ("rds_password", True))),
)
PG_SUPERUSER_ROLE = "rds_superuser"
# Predefined roles that reach the host as the engine's OS user (COPY … PROGRAM, server files).
# On PostgreSQL 15 CREATEROLE may grant any non-superuser role, these included, so the master
# could run shell commands; dbkeep marks them superuser, which makes granting them a superuser's
# act ("must be superuser to alter superusers"). Members of a NOLOGIN role cannot become it
# except by SET ROLE, and nobody but rdsadmin can be made a member.
PG_HOST_ACCESS_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
# Membership in these makes a login an IAM / Kerberos login: the master must not have it.
PG_NON_PASSWORD_ROLES = ("rds_iam", "rds_ad")

# Session settings of every rdsadmin session that handles secrets (all superuser-settable).
PG_QUIET_SESSION = (
    "SET log_statement = 'none'",
    "SET log_min_duration_statement = -1",
    "SET log_min_error_statement = 'panic'",
    "SET log_duration = off",
    "SET track_activities = off",
)
