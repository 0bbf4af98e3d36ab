"""PostgreSQL as a local process: ``initdb`` + ``postgres`` (the ``aurora-postgresql`` engine).

The engine runs as the engine OS user with ``listen_addresses = ''``: its only door is the unix
socket in ``run/`` (0700). dbkeep writes the whole configuration in ``conf/``
(``postgresql.conf``, ``pg_hba.conf``, ``pg_ident.conf``) and starts
``postgres -D data -c config_file=conf/postgresql.conf``; initdb's own postgresql.conf is unused.

Authentication (pg_hba.conf): ``rdsadmin`` — the initdb superuser — only by ``peer`` through
the ``dbkeep`` ident map (dbkeep's OS user → rdsadmin); every other local login
``scram-sha-256`` (the gateway relays the client's SCRAM exchange over this socket); no ``host``
lines at all. Note for the gateway: since the gateway process *is* dbkeep's OS user, a relayed
login named ``rdsadmin`` would pass ``peer`` — the gateway must refuse that user name before
relaying (DESIGN.md: nobody logs in as rdsadmin through the gateway).

Dynamic shared memory (parallel query) is ``mmap`` files in ``data/pg_dynshmem``, not
``/dev/shm``: the engine is confined to its cluster's directories (confine.py), and a shared
tmpfs is outside them. (``sysv`` would need no files, but System V segments are outside what
Landlock can confine.) Anonymous main shared memory is unchanged.

Shutdown uses SIGINT ("fast": ends sessions, checkpoints); PostgreSQL's SIGTERM is "smart"
shutdown, which waits for every client to leave.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql as pgsql

from dbkeep.engines import bootstrap as b
from dbkeep.engines import iam, pg_hook, pg_protect
from dbkeep.engines import reset
from dbkeep.engines.base import LocalEngine
from dbkeep.engines.driver import POSTGRES, EngineSpec
from dbkeep.engines.layout import ClusterLayout, write_private
from dbkeep.engines.passwords import scram_sha256_verifier
from dbkeep.engines.process import engine_env, kill_stale, run_tool
from dbkeep.engines.settings import EngineSetting
from dbkeep.engines.supervisor import ProcessPlan
from dbkeep.errors import DbError, EngineError

log = logging.getLogger("dbkeep.engines")

PORT = 5432
LOG_NAME = "postgresql.log"
IDENT_MAP = "dbkeep"


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: str = "/usr/lib/postgresql/15/bin"

    @property
    def postgres(self) -> str:
        return f"{self.bindir}/postgres"

    @property
    def initdb(self) -> str:
        return f"{self.bindir}/initdb"


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class _PostgresProcess:
    def __init__(self, engine: Postgres, layout: ClusterLayout, *, bootstrap: bool) -> None:
        self.engine = engine
        self.layout = layout
        self.name = engine._name(layout.cluster_id)

    def plan(self) -> ProcessPlan:
        e = self.engine
        return ProcessPlan(
            argv=e.command(self.layout, [e.binaries.postgres, "-D", str(self.layout.data),
                                         "-c", f"config_file={self.layout.conf / 'postgresql.conf'}"]),
            log_path=self.layout.log / LOG_NAME, cwd=self.layout.data, env=engine_env(), owner=e.user_of(self.layout),
            stop_signal=signal.SIGINT)

    async def before_spawn(self) -> None:
        await kill_stale(self.layout.data / "postmaster.pid", str(self.layout.data),
                         stop_signal=signal.SIGINT, grace=self.engine.supervisor.stop_grace, what=self.name)

    async def probe(self) -> None:
        conn = await self.engine._connect(self.layout, connect_timeout=3)
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()


class Postgres(LocalEngine):
    engine = POSTGRES
    label = "postgresql"

    def __init__(self, state_dir, supervisor, *, binaries: PostgresBinaries | None = None, **kw) -> None:
        super().__init__(state_dir, supervisor, **kw)
        self.binaries = binaries or PostgresBinaries()
        self._protected_oids: dict[str, dict[str, int]] = {}  # cluster -> rds_* role -> OID (finds a renamed one)

    def socket_path(self, cluster_id: str) -> str:
        return str(self.layout(cluster_id).run / f".s.PGSQL.{PORT}")

    # --- files ------------------------------------------------------------------------------
    async def _init_data(self, layout: ClusterLayout, spec: EngineSpec) -> None:
        await run_tool(
            self.command(layout, [self.binaries.initdb, "-D", str(layout.data), "-U", b.RDSADMIN_PG,
                                  "--auth-local=peer", "--auth-host=reject", "--encoding=UTF8", "--locale=C.UTF-8",
                                  "--no-instructions"]),
            log_path=layout.log / "initdb.log", timeout=self.tool_timeout, what="initdb",
            cwd=layout.data, owner=self.user_of(layout))

    def _write_config(self, layout: ClusterLayout, values: Mapping[str, str], *, bootstrap: bool = False) -> None:
        checked = self._checked_settings(values)
        conf = layout.conf
        fixed = {
            "hba_file": str(conf / "pg_hba.conf"),
            "ident_file": str(conf / "pg_ident.conf"),
            "listen_addresses": "",
            "port": str(PORT),
            "unix_socket_directories": str(layout.run),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
            # rdsadmin (a superuser) always finds a slot: the gateway admits 10 fewer clients
            # than max_connections (rds/capacity.py), of which 3 are kept for superusers here
            "superuser_reserved_connections": "3",
            # segments as files in data/pg_dynshmem: inside the confinement (no /dev/shm)
            "dynamic_shared_memory_type": "mmap",
            "max_wal_size": "1GB",
            "min_wal_size": "80MB",
            "datestyle": "iso, mdy",
            "lc_messages": "C.UTF-8",
            "lc_monetary": "C.UTF-8",
            "lc_numeric": "C.UTF-8",
            "lc_time": "C.UTF-8",
            "default_text_search_config": "pg_catalog.english",
            "log_destination": "stderr",
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "log_timezone": "UTC",
            "timezone": "UTC",
        }
        hook = pg_hook.sync_hook(layout)
        if hook is not None:  # the engine's own refusal of changes to the roles dbkeep owns
            fixed["shared_preload_libraries"] = str(hook)
        lines = ["# Written by dbkeep for this cluster; changes here are overwritten."]
        lines += [f"{k} = {_quote_conf(v)}" for k, v in fixed.items() if k not in checked]
        lines.append("# parameter group settings")
        lines += [f"{s.engine_option} = {_quote_conf(v)}" for s, v in checked.values()]
        write_private(conf / "postgresql.conf", "\n".join(lines) + "\n", owner=self.user_of(layout))
        pam_service = iam.sync_pg_pam(layout, self.user_of(layout))
        write_private(conf / "pg_hba.conf", "\n".join([
            "# Written by dbkeep. rdsadmin: peer only, mapped from dbkeep's OS user; members of rds_iam:",
            "# dbkeep's IAM proof through the cluster's PAM service (engines/iam.py); everyone else:",
            "# SCRAM over the private socket. No TCP at all.",
            "# TYPE  DATABASE  USER      METHOD",
            f"local   all       {b.RDSADMIN_PG}  peer map={IDENT_MAP}",
            iam.pg_hba_line(pam_service),
            "local   all       all       scram-sha-256",
        ]) + "\n", owner=self.user_of(layout))
        write_private(conf / "pg_ident.conf", "\n".join([
            "# Written by dbkeep. MAPNAME  SYSTEM-USERNAME  PG-USERNAME",
            f"{IDENT_MAP}  {self.user.dbkeep_name}  {b.RDSADMIN_PG}",
        ]) + "\n", owner=self.user_of(layout))

    def _process(self, layout: ClusterLayout, *, bootstrap: bool) -> _PostgresProcess:
        return _PostgresProcess(self, layout, bootstrap=bootstrap)

    # --- rdsadmin sessions ------------------------------------------------------------------
    async def _connect(self, layout: ClusterLayout, *, dbname: str = "postgres",
                       connect_timeout: int = 10) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            host=str(layout.run), port=PORT, user=b.RDSADMIN_PG, dbname=dbname, autocommit=True,
            connect_timeout=connect_timeout, application_name="dbkeep")

    async def _session(self, layout: ClusterLayout, fn, *, quiet: bool = False, dbname: str = "postgres"):
        async with asyncio.timeout(self.query_timeout):
            try:
                conn = await self._connect(layout, dbname=dbname)
            except psycopg.OperationalError as exc:
                raise EngineError(f"cannot reach {self._name(layout.cluster_id)} as rdsadmin: "
                                  f"{str(exc).strip().splitlines()[-1]}") from None
            try:
                if quiet:
                    await reset.pg_quiet(conn)
                return await fn(conn)
            except psycopg.OperationalError as exc:
                if conn.broken:
                    raise EngineError(f"{self._name(layout.cluster_id)}: {str(exc).strip()}") from None
                raise DbError(_pg_message(exc), sqlstate=exc.sqlstate or "XX000") from None
            except psycopg.Error as exc:
                raise DbError(_pg_message(exc), sqlstate=exc.sqlstate or "XX000") from None
            finally:
                await conn.close()

    async def run_as_rdsadmin(self, cluster_id: str, sql: str, params: Sequence[Any] = (), *,
                              database: str | None = None) -> list[tuple]:
        async def work(conn: psycopg.AsyncConnection) -> list[tuple]:
            cur = await conn.execute(sql, tuple(params) if params else None)
            return [tuple(r) for r in await cur.fetchall()] if cur.description else []
        return await self._session(self.layout(cluster_id), work, dbname=database or "postgres")

    # --- bootstrap ----------------------------------------------------------------------------
    async def _bootstrap(self, layout: ClusterLayout, spec: EngineSpec, master_password: str) -> dict | None:
        verifier = scram_sha256_verifier(master_password)

        async def work(conn: psycopg.AsyncConnection) -> int:
            oid = await reset.pg_reset_master(conn, spec.master_username, verifier, None, None)
            if spec.database_name and spec.database_name != "postgres":
                cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (spec.database_name,))
                if await cur.fetchone() is None:
                    await conn.execute(pgsql.SQL("CREATE DATABASE {} OWNER {}").format(
                        pgsql.Identifier(spec.database_name), pgsql.Identifier(spec.master_username)))
            return oid

        oid = await self._session(layout, work, quiet=True)
        return {"master_oid": oid}

    async def _apply_iam(self, layout: ClusterLayout, spec: EngineSpec, *, running: bool) -> None:
        # rewrites the cluster's PAM service (read by PAM at each login: no reload needed)
        await asyncio.to_thread(iam.sync_pg_pam, layout, self.user_of(layout))

    async def _after_start(self, layout: ClusterLayout, spec: EngineSpec) -> None:
        # clusters made before the lock existed get it too; a no-op once it holds
        await self._session(layout, reset.pg_lock_host_access)
        repaired = await self._session(layout, lambda conn: pg_protect.restore_protected(conn, self._oids(layout)))
        if repaired:
            log.warning("%s: rdsadmin / rds_* roles repaired at start: %s", self._name(layout.cluster_id), "; ".join(repaired))

    # --- what the statement guard asks (gateway/drivers/postgres_inspect.py) ------------------
    def _oids(self, layout: ClusterLayout) -> dict[str, int]:
        return self._protected_oids.setdefault(layout.cluster_id, {})

    async def guard_facts(self, cluster_id: str, user: str) -> tuple[bool, bool]:
        """(inspect the role's sessions, member of rds_password)."""
        return await self._session(self.layout(cluster_id), lambda conn: pg_protect.session_facts(conn, user))

    async def guard_role_graph(self, cluster_id: str) -> list[tuple[str, str]]:
        return await self._session(self.layout(cluster_id), pg_protect.role_graph)

    async def guard_routines(self, cluster_id: str, database: str) -> tuple[frozenset[str], frozenset[str]]:
        return await self._session(self.layout(cluster_id), pg_protect.routine_names, dbname=database)

    async def guard_protect(self, cluster_id: str) -> list[str]:
        """Check rdsadmin and the rds_* roles; restore them if changed. What was wrong (empty: intact)."""
        layout = self.layout(cluster_id)
        return await self._session(layout, lambda conn: pg_protect.restore_protected(conn, self._oids(layout)), quiet=True)

    # --- settings and reset -----------------------------------------------------------------
    async def _apply_live(self, layout: ClusterLayout, checked: Mapping[str, tuple[EngineSetting, str]]) -> None:
        async def work(conn: psycopg.AsyncConnection) -> None:
            cur = await conn.execute("SELECT sourcefile, sourceline, error FROM pg_file_settings "
                                     "WHERE error IS NOT NULL")
            errors = await cur.fetchall()
            if errors:
                f, line, err = errors[0]
                raise EngineError(f"configuration error at {f}:{line}: {err}", log_line=err)
            cur = await conn.execute("SELECT pg_conf_load_time()")
            (before,) = await cur.fetchone()
            await conn.execute("SELECT pg_reload_conf()")
            return before

        before = await self._session(layout, work)
        # The postmaster reloads asynchronously; new sessions see the new values once it has.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            rows = await self.run_as_rdsadmin(layout.cluster_id, "SELECT pg_conf_load_time() > %s", (before,))
            if rows and rows[0][0]:
                return
            if loop.time() > deadline:
                raise EngineError(f"{self._name(layout.cluster_id)} did not reload its configuration")
            await asyncio.sleep(0.05)

    async def reset_master(self, spec: EngineSpec, password: str) -> None:
        self._check_spec(spec)
        layout = self.layout(spec.cluster_id)
        meta = self._bootstrapped(layout)
        verifier = scram_sha256_verifier(password)
        oid = await self._session(
            layout, lambda conn: reset.pg_reset_master(conn, spec.master_username, verifier, spec.database_name,
                                                       meta.get("master_oid")),
            quiet=True)
        repaired = await self._session(layout, lambda conn: pg_protect.restore_protected(conn, self._oids(layout)), quiet=True)
        if repaired:
            log.warning("%s: rdsadmin / rds_* roles repaired at the master reset: %s", self._name(spec.cluster_id),
                        "; ".join(repaired))
        if oid != meta.get("master_oid"):
            layout.update_meta(master_oid=oid)
        log.info("%s: master user %s reset", self._name(spec.cluster_id), spec.master_username)


def _pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return primary or str(exc).strip().splitlines()[0]
