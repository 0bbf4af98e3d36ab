"""MariaDB as a local process: ``mariadb-install-db`` + ``mariadbd`` (the ``aurora-mysql`` engine).

The engine runs as the engine OS user with ``skip-networking``: its only door is the unix socket
in ``run/`` (0700). dbkeep writes the whole configuration (``conf/my.cnf``, read with
``--defaults-file`` so no system option file applies).

How dbkeep logs in as rdsadmin. MariaDB's ``unix_socket`` plugin accepts a login only when the
connecting process's OS user *has the account's name*; dbkeep connects as root (or as the user
running it), so ``rdsadmin IDENTIFIED VIA unix_socket`` could never be used — and an account
named after dbkeep's own OS user would let anyone whose login the gateway relays over the socket
in without a password. So rdsadmin is ``IDENTIFIED VIA mysql_native_password`` with a random
256-bit secret that only dbkeep can read (``rdsadmin.secret``, 0600, beside — not inside — the
data directory, out of the engine user's reach). The gateway additionally refuses the name.

Bootstrap: ``mariadb-install-db --auth-root-authentication-method=socket
--auth-root-socket-user=<dbkeep's OS user>`` leaves one ``unix_socket`` account that dbkeep can
use once; through it we create rdsadmin and load the time zone tables, then as rdsadmin we drop
every other account (root included), and create the role, the procedures, the master and the
initial database (bootstrap.py, reset.py).

Server plugins. Every login reaches the engine from the gateway's process, so a plugin that
judges the *peer* cannot work as on-premises: ``unix_socket`` would let anyone the gateway relays
in as an account named after dbkeep's OS user (``CREATE USER root IDENTIFIED VIA unix_socket``
becomes a passwordless door). It is switched off once bootstrap is done, and such accounts get
the engine's own ``ERROR 1524 Plugin 'unix_socket' is not loaded``. The master holds INSERT on
``*.*``, which MariaDB takes as leave to ``INSTALL SONAME``; the engine's ``plugin_dir`` is
therefore a dbkeep-owned directory holding only the plugins on ``ALLOWED_PLUGINS`` (links into
the system's plugin directory), so ``auth_pam``, ``handlersocket`` (its own TCP port, past the
gateway), ``federated`` and the rest cannot be loaded. ``auth_ed25519`` is loaded at start, so
ed25519 accounts work without INSTALL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pymysql
import pymysql.cursors

from dbkeep.engines import bootstrap as b
from dbkeep.engines import iam
from dbkeep.engines import reset
from dbkeep.engines.base import LocalEngine
from dbkeep.engines.driver import MYSQL, EngineSpec
from dbkeep.engines.layout import ClusterLayout, write_private
from dbkeep.engines.passwords import mysql_native_hash
from dbkeep.engines.process import engine_env, kill_stale, log_size, read_log_lines, pick_log_line, run_tool
from dbkeep.engines.settings import EngineSetting
from dbkeep.engines.supervisor import ProcessPlan
from dbkeep.errors import DbError, EngineError
from dbkeep.pki.ca import self_signed_engine_certificate

log = logging.getLogger("dbkeep.engines")

T = TypeVar("T")
SOCKET_NAME = "mysqld.sock"
# Repair mode (skip-grant-tables: no authentication at all) listens here instead, where the
# gateway never connects.
REPAIR_SOCKET_NAME = "repair.sock"
# Connect errors that mean the server is up but refuses rdsadmin: bad password or missing
# account, account locked, too many connections for it, password expired.
_RDSADMIN_REFUSED = frozenset({1045, 4151, 1226, 1820, 1862})
LOG_NAME = "mariadb.log"
# what mariadbd logs when it cannot load its grant tables (and then exits)
_GRANT_TABLES_FAULT = "privilege tables"
# plugins the engine may load: loaded at every start (see the module docstring)
ALLOWED_PLUGINS = ("auth_ed25519",)


@dataclass(frozen=True)
class MariaDBBinaries:
    mariadbd: str = "/usr/sbin/mariadbd"
    install_db: str = "/usr/bin/mariadb-install-db"
    client: str = "/usr/bin/mariadb"
    tzinfo_to_sql: str = "/usr/bin/mariadb-tzinfo-to-sql"
    zoneinfo: str = "/usr/share/zoneinfo"
    plugins: str = "/usr/lib/mysql/plugin"
    system_tables: str = "/usr/share/mysql/mysql_system_tables.sql"


class RdsadminRefused(EngineError):
    """The engine is up but does not let rdsadmin in (what a master with DML on the grant
    tables can do); MariaDB._repair_rdsadmin puts it back. ``refusal`` is the engine's own
    error ("1045 Access denied for user …"), for the log and the audit event."""

    def __init__(self, message: str, refusal: str) -> None:
        super().__init__(message)
        self.refusal = refusal


class _MariaDBProcess:
    def __init__(self, engine: MariaDB, layout: ClusterLayout, *, bootstrap: bool, repair: bool = False) -> None:
        self.engine = engine
        self.layout = layout
        self.bootstrap = bootstrap
        self.repair = repair
        self.name = engine._name(layout.cluster_id)

    def plan(self) -> ProcessPlan:
        e = self.engine
        return ProcessPlan(
            argv=e.command(self.layout, [e.binaries.mariadbd, f"--defaults-file={self.layout.conf / 'my.cnf'}"]),
            log_path=self.layout.log / LOG_NAME, cwd=self.layout.data, env=engine_env(), owner=e.user_of(self.layout),
            stop_signal=signal.SIGTERM)

    async def before_spawn(self) -> None:
        await kill_stale(self.layout.run / "mariadbd.pid", str(self.layout.conf / "my.cnf"),
                         stop_signal=signal.SIGTERM, grace=self.engine.supervisor.stop_grace, what=self.name)

    async def probe(self) -> None:
        await asyncio.to_thread(self.engine._probe_sync, self.layout, self.bootstrap, self.repair)


class MariaDB(LocalEngine):
    engine = MYSQL
    label = "mariadb"
    rotates_iam_key = True  # IAM proofs are bound to connection ids (native/aws_iam_auth.c)

    def __init__(self, state_dir, supervisor, *, binaries: MariaDBBinaries | None = None, **kw) -> None:
        super().__init__(state_dir, supervisor, **kw)
        self.binaries = binaries or MariaDBBinaries()
        self._hygiene_locks: dict[str, asyncio.Lock] = {}
        self._routines: dict[str, tuple[tuple, list[tuple[str, str, str, str, str, str]]]] = {}
        self._specs: dict[str, EngineSpec] = {}  # each running cluster's spec, for the live repair

    def socket_path(self, cluster_id: str) -> str:
        return str(self.layout(cluster_id).run / SOCKET_NAME)

    # --- files ------------------------------------------------------------------------------
    async def _init_data(self, layout: ClusterLayout, spec: EngineSpec) -> None:
        self._write_config(layout, {}, bootstrap=True)
        await run_tool(
            self.command(layout, [
                self.binaries.install_db, f"--defaults-file={layout.conf / 'my.cnf'}",
                "--auth-root-authentication-method=socket", f"--auth-root-socket-user={self.user.dbkeep_name}",
                "--skip-test-db", "--skip-name-resolve"]),
            log_path=layout.log / "install.log", timeout=self.tool_timeout, what="mariadb-install-db",
            cwd=layout.data, owner=self.user_of(layout))

    def _write_config(self, layout: ClusterLayout, values: Mapping[str, str], *, bootstrap: bool = False,
                      repair: bool = False) -> None:
        checked = self._checked_settings(values)
        lines = [
            "# Written by dbkeep for this cluster; changes here are overwritten.",
            "[mariadbd]",
            f"datadir = {layout.data}",
            f"socket = {layout.run / (REPAIR_SOCKET_NAME if repair else SOCKET_NAME)}",
            f"pid-file = {layout.run / 'mariadbd.pid'}",
            f"tmpdir = {layout.run}",
            "skip-networking",
            "skip-name-resolve",
            # the gateway's PROXY header (gateway/proxy_header.py) names the real client on the
            # unix socket; connections without one (rdsadmin's) stay 'localhost'
            "proxy-protocol-networks = localhost",
            f"log-error = {layout.log / LOG_NAME}",
            "log-output = FILE",
            f"general-log-file = {layout.log / 'general.log'}",
            f"slow-query-log-file = {layout.log / 'slow.log'}",
            "local-infile = 0",
            f"secure-file-priv = {layout.run}",
            # TLS on the private socket, for the gateway's engine leg of TLS clients (REQUIRE SSL)
            f"ssl-cert = {layout.conf / 'engine-cert.pem'}",
            f"ssl-key = {layout.conf / 'engine-key.pem'}",
        ]
        self._engine_certificate(layout)
        lines.append(f"plugin-dir = {self._plugin_dir(layout)}")
        lines += [f"plugin-load-add = {name}.so" for name in ALLOWED_PLUGINS]
        lines += iam.mysql_config_lines(layout)   # AWSAuthenticationPlugin while IAM auth is on
        if not bootstrap:  # bootstrap logs in once through the unix_socket account install-db made
            lines.append("unix-socket = OFF")
        if repair:
            lines.append("skip-grant-tables")
        if "character_set_server" not in checked and "collation_server" not in checked:
            lines += ["character-set-server = utf8mb4", "collation-server = utf8mb4_general_ci"]
        if "time_zone" not in checked and not bootstrap:    # named zones need the tables bootstrap loads
            lines.append("default-time-zone = UTC")
        lines.append("# parameter group settings")
        for setting, value in checked.values():
            lines.append(f'{setting.engine_option} = "{value}"')
        write_private(layout.conf / "my.cnf", "\n".join(lines) + "\n", owner=self.user_of(layout))

    def confine_rules(self, layout: ClusterLayout) -> list[tuple[str, str]]:
        return [*super().confine_rules(layout), ("--ro", str(layout.root / "plugins"))]

    def _plugin_dir(self, layout: ClusterLayout) -> Path:
        """``plugins/`` beside the data directory: owned by dbkeep, not the engine user, and
        holding a link to each allowed plugin and nothing else (rebuilt before every start)."""
        directory = layout.root / "plugins"
        directory.mkdir(mode=0o755, exist_ok=True)
        os.chmod(directory, 0o755)
        keep = {f"{name}.so" for name in ALLOWED_PLUGINS} | ({iam.PLUGIN_FILE} if iam.enabled(layout) else set())
        for entry in directory.iterdir():
            if entry.name not in keep:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        for name in ALLOWED_PLUGINS:
            source, link = Path(self.binaries.plugins) / f"{name}.so", directory / f"{name}.so"
            if not source.is_file():
                raise EngineError(f"MariaDB plugin {source} is missing (install mariadb-server)")
            if link.is_symlink() and os.readlink(link) == str(source):
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(source)
        iam.sync_mysql_plugin(directory, layout)  # a copy, not a link: dbkeep's own build
        return directory

    async def _apply_iam(self, layout: ClusterLayout, spec: EngineSpec, *, running: bool) -> None:
        # my.cnf too (it rebuilds plugins/): a crash-restart by the supervisor keeps the state
        await asyncio.to_thread(self._write_config, layout, spec.settings)
        if running:
            await self._session(layout, lambda cur: iam.mysql_toggle(cur, spec.iam_auth), quiet=True)

    def _engine_certificate(self, layout: ClusterLayout) -> None:
        """The engine's own self-signed certificate (key 0600, owned by the engine user)."""
        cert_path, key_path = layout.conf / "engine-cert.pem", layout.conf / "engine-key.pem"
        if cert_path.exists() and key_path.exists():
            return
        cert_pem, key_pem = self_signed_engine_certificate(f"dbkeep engine {layout.cluster_id}", now=dt.datetime.now(dt.timezone.utc))
        write_private(key_path, key_pem.decode(), owner=self.user_of(layout))
        write_private(cert_path, cert_pem.decode(), owner=self.user_of(layout))

    def _process(self, layout: ClusterLayout, *, bootstrap: bool, repair: bool = False) -> _MariaDBProcess:
        return _MariaDBProcess(self, layout, bootstrap=bootstrap, repair=repair)

    # --- rdsadmin sessions (pymysql in a worker thread, bounded) ------------------------------
    def _connect(self, layout: ClusterLayout, bootstrap: bool = False, repair: bool = False) -> pymysql.Connection:
        args: dict[str, Any] = dict(
            unix_socket=str(layout.run / (REPAIR_SOCKET_NAME if repair else SOCKET_NAME)), connect_timeout=5,
            read_timeout=int(self.query_timeout), write_timeout=int(self.query_timeout), autocommit=True,
            charset="utf8mb4", cursorclass=pymysql.cursors.Cursor,
            # the private 0700 socket needs no TLS; PyMySQL >= 1.2 would otherwise negotiate it and
            # build a fresh verifying SSLContext (the system CA store) for every connection: ~15 ms
            # of CPU each, on the gateway's path since live hygiene and account facts use rdsadmin
            ssl_disabled=True)
        if bootstrap or repair:  # repair: skip-grant-tables, any name will do
            args["user"] = self.user.dbkeep_name
        else:
            args.update(user=b.RDSADMIN_MYSQL[0], password=layout.read_secret())
        return pymysql.connect(**args)

    def _probe_sync(self, layout: ClusterLayout, bootstrap: bool, repair: bool = False) -> None:
        try:
            conn = self._connect(layout, bootstrap, repair)
        except pymysql.OperationalError as exc:
            if not bootstrap and exc.args and exc.args[0] in _RDSADMIN_REFUSED:
                return  # the server answers: it is up, and start() repairs rdsadmin
            raise
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def _session_sync(self, layout: ClusterLayout, fn: Callable[[Any], T], quiet: bool, bootstrap: bool,
                      repair: bool = False) -> T:
        try:
            conn = self._connect(layout, bootstrap, repair)
        except pymysql.MySQLError as exc:
            message = f"cannot reach {self._name(layout.cluster_id)} as rdsadmin: {exc.args[-1]}"
            if not (bootstrap or repair) and exc.args and exc.args[0] in _RDSADMIN_REFUSED:
                raise RdsadminRefused(message, f"{exc.args[0]} {exc.args[-1]}") from None
            raise EngineError(message) from None
        try:
            with conn.cursor() as cur:
                if quiet:
                    reset.mysql_quiet(cur)
                return fn(cur)
        except pymysql.MySQLError as exc:
            errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 1105
            message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
            if errno >= 2000:    # client-side: the connection broke
                raise EngineError(f"{self._name(layout.cluster_id)}: {message}") from None
            raise DbError(message, mysql_errno=errno) from None
        finally:
            conn.close()

    async def _session(self, layout: ClusterLayout, fn: Callable[[Any], T], *, quiet: bool = False,
                       bootstrap: bool = False, repair: bool = False) -> T:
        async with asyncio.timeout(self.query_timeout + 15):
            return await asyncio.to_thread(self._session_sync, layout, fn, quiet, bootstrap, repair)

    # --- rdsadmin's own repair ------------------------------------------------------------------
    def _hygiene_lock(self, cluster_id: str) -> asyncio.Lock:
        """One grant-table repair at a time per cluster (start, reset, the gateway's live
        hygiene): they share a probe role and read each other's half-done work otherwise.
        Never held while taking the cluster's lifecycle lock."""
        return self._hygiene_locks.setdefault(cluster_id, asyncio.Lock())

    async def start(self, spec: EngineSpec) -> None:
        """As every engine; a server that cannot load its grant tables (renamed or dropped:
        "Can't open and lock privilege tables") is started in repair mode, its system tables
        made again, rdsadmin put back, and started normally ("No lockouts")."""
        try:
            await super().start(spec)
        except EngineError as exc:
            line = exc.log_line or str(exc)
            if _GRANT_TABLES_FAULT not in line:
                raise
            layout = self.layout(spec.cluster_id)
            async with self._lock(spec.cluster_id):
                await self._repair_rdsadmin(layout, spec, RdsadminRefused(
                    f"the engine cannot load its grant tables: {line}", line))
                try:
                    await self._after_start(layout, spec)
                except BaseException:
                    await self.supervisor.stop(spec.cluster_id)  # fail closed: not up unchecked
                    raise

    async def _grant_tables_sound(self, layout: ClusterLayout) -> None:
        """RdsadminRefused (the callers' cue for the repair) when a grant table or the mysql.user
        view is missing while the server runs: it would not start again, and account
        statements fail meanwhile."""
        missing = await self._session(layout, reset.mysql_missing_grant_tables)
        if missing:
            refusal = f"grant tables missing: {', '.join('mysql.' + m for m in missing)}"
            raise RdsadminRefused(refusal, refusal)

    async def _after_start(self, layout: ClusterLayout, spec: EngineSpec) -> None:
        self._specs[spec.cluster_id] = spec
        try:
            await self._grant_tables_sound(layout)
            async with self._hygiene_lock(layout.cluster_id):
                repairs = await self._session(layout, reset.mysql_hygiene, quiet=True)
        except RdsadminRefused as exc:
            await self._repair_rdsadmin(layout, spec, exc)
            async with self._hygiene_lock(layout.cluster_id):
                repairs = await self._session(layout, reset.mysql_hygiene, quiet=True)
        for what in repairs:
            self._repaired(layout.cluster_id, what)

    async def _repair_rdsadmin(self, layout: ClusterLayout, spec: EngineSpec, why: RdsadminRefused) -> None:
        """Restart the engine with skip-grant-tables on a socket the gateway does not use, put
        rdsadmin back as bootstrap made it, and start it normally again. The caller holds the
        cluster's lock; clients get "not available" meanwhile."""
        name = self._name(layout.cluster_id)
        log.warning("%s: %s; repairing rdsadmin with the engine in repair mode", name, why)
        secret_hash = mysql_native_hash(layout.read_secret())

        def restore(cur) -> None:
            cur.execute("FLUSH PRIVILEGES")  # account statements need the grant tables loaded
            reset.mysql_restore_rdsadmin(cur, secret_hash)

        await self.supervisor.stop(spec.cluster_id)
        self._write_config(layout, spec.settings, repair=True)
        try:
            await self.supervisor.start(spec.cluster_id, self._process(layout, bootstrap=False, repair=True),
                                        ready_timeout=self.ready_timeout)
            missing = await self._session(layout, reset.mysql_missing_grant_tables, repair=True)
            if missing:  # renamed, dropped: made again from MariaDB's own definitions
                await self._create_system_tables(layout)
                for what in await self._session(layout, lambda cur: reset.mysql_put_back_renamed(cur, missing),
                                                repair=True):
                    self._repaired(layout.cluster_id, what)
                self._repaired(layout.cluster_id, f"system tables made again ({', '.join('mysql.' + m for m in missing)} "
                                                  "were missing)")
            await self._session(layout, restore, quiet=True, repair=True)
        finally:  # back to normal service whatever happened
            await self.supervisor.stop(spec.cluster_id)
            self._write_config(layout, spec.settings)
            await self.supervisor.start(spec.cluster_id, self._process(layout, bootstrap=False),
                                        ready_timeout=self.ready_timeout)
        await self._session(layout, lambda cur: cur.execute("SELECT 1"))  # rdsadmin is back
        self._repaired(layout.cluster_id, f"rdsadmin restored (the engine refused it: {why.refusal})")

    async def _create_system_tables(self, layout: ClusterLayout) -> None:
        """MariaDB's own ``mysql_system_tables.sql`` (what mariadb-install-db runs: ``CREATE TABLE
        IF NOT EXISTS`` of every system table, the ``mysql.user`` view, ``mariadb.sys``) through
        the repair socket."""
        sql_text = await asyncio.to_thread(Path(self.binaries.system_tables).read_bytes)
        await run_tool(
            self.command(layout, [
                self.binaries.client, "--no-defaults", f"--socket={layout.run / REPAIR_SOCKET_NAME}",
                f"--user={self.user.dbkeep_name}", "--batch", "--init-command=SET SESSION sql_log_off=1", "mysql"],
                switch_user=False),
            log_path=layout.log / "install.log", timeout=self.tool_timeout, what="making the system tables again",
            input_bytes=sql_text)

    async def run_as_rdsadmin(self, cluster_id: str, sql: str, params: Sequence[Any] = (), *,
                              database: str | None = None) -> list[tuple]:
        def work(cur) -> list[tuple]:
            if database:
                cur.execute(f"USE {b.mysql_ident(database)}")
            cur.execute(sql, tuple(params) if params else None)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        return await self._session(self.layout(cluster_id), work)

    # --- the gateway's live checks (injected into it by app.py) ----------------------------------
    async def live_hygiene(self, cluster_id: str, wait_thread: int | None = None) -> reset.LiveHygiene:
        """Take back, now, what a session may have written into the grant tables (see
        :func:`reset.mysql_live_hygiene`); first wait until engine thread ``wait_thread`` (the
        session's own) has finished its statement. Each repair is an ``engine.repaired`` event.
        One at a time per cluster."""
        layout = self.layout(cluster_id)
        master = self._bootstrapped(layout).get("master_username")
        secret_hash = mysql_native_hash(layout.read_secret())

        async def once() -> reset.LiveHygiene:
            if wait_thread is not None:
                while not await self._session(layout, lambda cur: reset.mysql_wait_idle(
                        cur, wait_thread, time.monotonic() + min(30.0, self.query_timeout / 2))):
                    pass
            async with self._hygiene_lock(cluster_id):
                return await self._session(layout, lambda cur: reset.mysql_live_hygiene(cur, secret_hash, master),
                                           quiet=True)

        try:
            report = await once()
        except RdsadminRefused as exc:
            # rdsadmin itself was dropped or changed in the engine's memory (SQL the guard could
            # not read): the last line restarts the engine in repair mode and puts it back
            spec = self._specs.get(cluster_id)
            if spec is None:
                raise
            async with self._lock(cluster_id):
                try:  # another session's hygiene may have repaired it meanwhile
                    await self._session(layout, lambda cur: cur.execute("SELECT 1"))
                except RdsadminRefused:
                    await self._repair_rdsadmin(layout, spec, exc)
            report = await once()
            report.protected.insert(0, f"rdsadmin: the engine refused it ({exc.refusal})")
        for what in report.repairs:
            self._repaired(cluster_id, what)
        return report

    async def thread_user(self, cluster_id: str, thread_id: int) -> str | None:
        """The account name of engine thread ``thread_id`` (None: no such thread)."""
        return await self._session(self.layout(cluster_id), lambda cur: reset.mysql_thread_user(cur, thread_id))

    async def routines(self, cluster_id: str) -> list[tuple[str, str, str, str, str, str]]:
        """Every stored routine of the cluster as (db, name, type, definer, security type, body), for the
        gateway to judge before a session runs routines it has not read (cached until
        mysql.proc changes)."""
        fingerprint, rows = await self._session(self.layout(cluster_id), reset.mysql_routines)
        cached = self._routines.get(cluster_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        self._routines[cluster_id] = (fingerprint, rows)
        return rows

    async def account_facts(self, cluster_id: str, user: str) -> tuple[bool, str]:
        """(whether ``user``'s gateway sessions must be inspected, the global sql_mode)."""
        return await self._session(self.layout(cluster_id), lambda cur: reset.mysql_account_facts(cur, user))

    # --- bootstrap ----------------------------------------------------------------------------
    async def _bootstrap(self, layout: ClusterLayout, spec: EngineSpec, master_password: str) -> dict | None:
        secret_hash = mysql_native_hash(layout.ensure_secret())
        rdsadmin = b.RDSADMIN_MYSQL

        def phase_a(cur) -> None:
            reset.mysql_restore_rdsadmin(cur, secret_hash)

        await self._session(layout, phase_a, quiet=True, bootstrap=True)
        await self._load_time_zones(layout)
        master_hash = mysql_native_hash(master_password)

        def phase_b(cur) -> None:
            cur.execute("SELECT User, Host FROM mysql.global_priv WHERE Host <> '' AND NOT "
                        "((User = %s AND Host = %s) OR (User = 'mariadb.sys' AND Host = 'localhost'))", rdsadmin)
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            cur.execute("DELETE FROM mysql.proxies_priv")
            cur.execute("DROP DATABASE IF EXISTS test")
            cur.execute("DELETE FROM mysql.db WHERE Db LIKE 'test%'")
            cur.execute("FLUSH PRIVILEGES")
            reset.mysql_reset_master(cur, spec.master_username, master_hash)
            if spec.database_name:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {b.mysql_ident(spec.database_name)}")

        await self._session(layout, phase_b, quiet=True)
        return None

    async def _load_time_zones(self, layout: ClusterLayout) -> None:
        """Named time zones (``time_zone = 'Europe/Paris'``) need MariaDB's time zone tables."""
        log_path = layout.log / "install.log"
        offset = log_size(log_path)
        with open(log_path, "ab") as errlog:
            proc = await asyncio.create_subprocess_exec(
                *self.command(layout, [self.binaries.tzinfo_to_sql, self.binaries.zoneinfo], switch_user=False),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=errlog, env=engine_env(), start_new_session=True)
        try:
            async with asyncio.timeout(self.tool_timeout):
                sql_text, _ = await proc.communicate()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            line = pick_log_line(read_log_lines(log_path, offset))
            raise EngineError(f"mariadb-tzinfo-to-sql failed: {line}", log_line=line)
        await run_tool(
            self.command(layout, [
                self.binaries.client, "--no-defaults", f"--socket={layout.run / SOCKET_NAME}",
                f"--user={self.user.dbkeep_name}", "--batch", "--init-command=SET SESSION sql_log_off=1", "mysql"],
                switch_user=False),
            log_path=log_path, timeout=self.tool_timeout, what="loading the time zone tables",
            input_bytes=sql_text)

    # --- settings and reset -----------------------------------------------------------------
    async def apply_dynamic_settings(self, spec: EngineSpec, settings: Mapping[str, str]) -> None:
        await super().apply_dynamic_settings(spec, settings)
        if spec.cluster_id in self._specs:  # the live repair rewrites my.cnf from it
            merged = {**spec.settings, **settings}
            self._specs[spec.cluster_id] = dataclasses.replace(spec, settings=merged)

    async def _apply_live(self, layout: ClusterLayout, checked: Mapping[str, tuple[EngineSetting, str]]) -> None:
        def work(cur) -> None:
            for name, (setting, value) in checked.items():
                if setting.data_type in ("integer", "float", "boolean"):
                    cur.execute(f"SET GLOBAL {name} = {value}")
                else:
                    cur.execute(f"SET GLOBAL {name} = %s", (value,))
        await self._session(layout, work)

    async def reset_master(self, spec: EngineSpec, password: str) -> None:
        self._check_spec(spec)
        layout = self.layout(spec.cluster_id)
        self._bootstrapped(layout)
        password_hash = mysql_native_hash(password)

        secret_hash = mysql_native_hash(layout.read_secret())

        def put_rdsadmin_back(cur) -> None:
            if reset.mysql_check_rdsadmin(cur, secret_hash):  # its row emptied away: memory and tables agree again
                cur.execute("FLUSH PRIVILEGES")

        async def reset_once() -> None:
            await self._grant_tables_sound(layout)
            async with self._hygiene_lock(spec.cluster_id):
                await self._session(layout, put_rdsadmin_back, quiet=True)
                repairs = await self._session(
                    layout, lambda cur: reset.mysql_reset_master(cur, spec.master_username, password_hash), quiet=True)
            for what in repairs:
                self._repaired(layout.cluster_id, what)

        try:
            await reset_once()
        except RdsadminRefused as exc:  # "No lockouts" covers dbkeep's own hand too
            async with self._lock(spec.cluster_id):
                await self._repair_rdsadmin(layout, spec, exc)
            await reset_once()
        log.info("%s: master user %s reset", self._name(spec.cluster_id), spec.master_username)
